//! One function's log on disk: numbered segment files of JSON lines, the newest open for
//! appending, older ones removed for size and age.

use std::{
    collections::VecDeque,
    fs::File,
    io::{self, BufRead, BufReader, BufWriter, Read, Seek, SeekFrom, Write},
    path::{Path, PathBuf},
};

use super::{LogLine, Position, Retention, to_millis};

/// A segment's file name: its number, zero-padded so that names sort as numbers do.
pub(crate) fn file_name(seq: u64) -> String {
    format!("{seq:020}.log")
}

/// The segments in `dir`, oldest first (none when it does not exist).
pub(crate) fn list(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut segments = Vec::new();
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let Some(seq) = name
            .to_str()
            .and_then(|n| n.strip_suffix(".log"))
            .and_then(|n| n.parse::<u64>().ok())
        else {
            continue;
        };
        segments.push((seq, entry.path()));
    }
    segments.sort_unstable_by_key(|(seq, _)| *seq);
    Ok(segments)
}

/// How much of the tail of a segment is read first to find its newest line at startup.
const TAIL_BYTES: u64 = 64 * 1024;

/// The time of the newest complete line of a segment file, if it has one.
fn newest_time(path: &Path) -> io::Result<Option<u64>> {
    let mut file = File::open(path)?;
    let len = file.metadata()?.len();
    // Lines may be longer than the first window (a process function logs lines of up to
    // 256 KiB): a window holding only the end of one line is widened until a whole line
    // fits in it or it reaches the start of the file.
    let mut window = TAIL_BYTES;
    loop {
        let start = len.saturating_sub(window);
        file.seek(SeekFrom::Start(start))?;
        let mut tail = Vec::new();
        (&mut file).take(len - start).read_to_end(&mut tail)?;
        let mut lines = tail.split(|&b| b == b'\n');
        if start > 0 {
            // The window's first piece may be the end of a line cut by it.
            lines.next();
        }
        let newest = lines
            .rev()
            .find_map(|line| serde_json::from_slice::<LogLine>(line).ok())
            .map(|line| line.time);
        if newest.is_some() || start == 0 {
            return Ok(newest);
        }
        window = window.saturating_mul(4);
    }
}

/// The time of the first line of a segment file, if it has one.
fn oldest_time(path: &Path) -> io::Result<Option<u64>> {
    let mut reader = BufReader::new(File::open(path)?);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(None);
        }
        if let Ok(line) = serde_json::from_slice::<LogLine>(&line) {
            return Ok(Some(line.time));
        }
    }
}

#[derive(Debug)]
struct Segment {
    seq: u64,
    path: PathBuf,
    bytes: u64,
    /// The newest line's time (0 for none).
    newest: u64,
}

/// One function's log, as the writer thread keeps it.
#[derive(Debug)]
pub(crate) struct FunctionLog {
    dir: PathBuf,
    segments: VecDeque<Segment>,
    /// The newest segment, open for appending. After a restart the old newest segment is
    /// left as it is (its last line may be torn) and a new one is started.
    active: Option<BufWriter<File>>,
    /// The next segment's number. It only grows, even when every segment has been
    /// removed for age, so that a line's position is greater than any before it (a
    /// follower skips lines at or before the end of the history it read).
    next_seq: u64,
    total: u64,
    dirty: bool,
}

impl FunctionLog {
    /// The log in `dir`, as found on disk.
    pub(crate) fn load(dir: PathBuf) -> io::Result<FunctionLog> {
        let mut segments = VecDeque::new();
        let mut total = 0;
        for (seq, path) in list(&dir)? {
            let meta = std::fs::metadata(&path)?;
            let bytes = meta.len();
            // Lines are written a little out of order across threads: the newest in a
            // segment is nearly always its last, and a stray earlier one is no older
            // than its first. A segment without a whole line (empty, or torn by a crash)
            // counts as written when the file last was: 0 would have the age bound
            // remove it at once.
            let newest = match newest_time(&path)? {
                Some(t) => t.max(oldest_time(&path)?.unwrap_or(0)),
                None => to_millis(meta.modified()?),
            };
            total += bytes;
            segments.push_back(Segment {
                seq,
                path,
                bytes,
                newest,
            });
        }
        let next_seq = segments.back().map_or(1, |s| s.seq + 1);
        Ok(FunctionLog {
            dir,
            segments,
            active: None,
            next_seq,
            total,
            dirty: false,
        })
    }

    /// An empty log in `dir` (created on the first line).
    pub(crate) fn new(dir: PathBuf) -> FunctionLog {
        FunctionLog {
            dir,
            segments: VecDeque::new(),
            active: None,
            next_seq: 1,
            total: 0,
            dirty: false,
        }
    }

    /// Appends `encoded` (one JSON line, newline included) and returns where it ends.
    pub(crate) fn append(
        &mut self,
        encoded: &[u8],
        time: u64,
        retention: &Retention,
    ) -> io::Result<Position> {
        let full = self
            .segments
            .back()
            .is_none_or(|s| s.bytes >= retention.segment_bytes());
        if self.active.is_none() || full {
            self.rotate(retention)?;
        }
        let (Some(active), Some(segment)) = (self.active.as_mut(), self.segments.back_mut()) else {
            return Err(io::Error::other("no open segment after a rotation"));
        };
        active.write_all(encoded)?;
        let len = encoded.len() as u64;
        segment.bytes += len;
        segment.newest = segment.newest.max(time);
        self.total += len;
        self.dirty = true;
        Ok(Position {
            segment: segment.seq,
            offset: segment.bytes,
        })
    }

    /// Closes the newest segment, starts the next, and removes the oldest segments while
    /// the older ones together exceed the size bound.
    fn rotate(&mut self, retention: &Retention) -> io::Result<()> {
        self.flush()?;
        self.active = None;
        std::fs::create_dir_all(&self.dir)?;
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.dir.join(file_name(seq));
        let file = File::options().create(true).append(true).open(&path)?;
        let bytes = file.metadata()?.len();
        self.total += bytes;
        self.segments.push_back(Segment {
            seq,
            path,
            bytes,
            newest: 0,
        });
        self.active = Some(BufWriter::with_capacity(64 * 1024, file));
        self.trim(retention.max_bytes)
    }

    /// Removes the oldest segments while the log exceeds `max_bytes`, never the newest.
    pub(crate) fn trim(&mut self, max_bytes: u64) -> io::Result<()> {
        while self.total > max_bytes && self.segments.len() > 1 {
            self.remove_oldest()?;
        }
        Ok(())
    }

    fn remove_oldest(&mut self) -> io::Result<()> {
        let Some(oldest) = self.segments.pop_front() else {
            return Ok(());
        };
        if self.segments.is_empty() {
            self.active = None;
        }
        self.total -= oldest.bytes;
        match std::fs::remove_file(&oldest.path) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// Removes the segments whose newest line is older than `cutoff` (epoch ms).
    pub(crate) fn sweep(&mut self, cutoff: u64) -> io::Result<()> {
        while self.segments.front().is_some_and(|s| s.newest < cutoff) {
            if self.segments.len() == 1 {
                // The open segment goes too: its lines were all old.
                self.dirty = false;
                self.active = None;
            }
            self.remove_oldest()?;
        }
        Ok(())
    }

    /// Writes out what is buffered, so that readers see it.
    pub(crate) fn flush(&mut self) -> io::Result<()> {
        if self.dirty {
            self.dirty = false;
            if let Some(active) = &mut self.active {
                active.flush()?;
            }
        }
        Ok(())
    }
}
