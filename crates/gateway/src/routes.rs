//! Matching requests to routes.

use std::{borrow::Cow, collections::HashMap, sync::Arc};

use nimbus_core::{HttpMethod, PathSegment, RouteKey, RoutePath, RouteSpec};

/// A route table that cannot be built (the manifest's validation rules out every case).
#[derive(Debug, thiserror::Error)]
#[error("route `{route}` conflicts with another route: {reason}")]
pub struct RouteTableError {
    route: String,
    reason: String,
}

/// The routes of an app, ready for matching.
#[derive(Debug, Default)]
pub struct RouteTable {
    routes: Vec<RouteSpec>,
    /// Each route's key as text (`GET /users/{id}`, `$default`), made once here for the
    /// access line, the metrics label and the trace span name of every request.
    keys: Vec<Arc<str>>,
    by_method: HashMap<HttpMethod, matchit::Router<usize>>,
    any: matchit::Router<usize>,
    default: Option<usize>,
}

/// A request matched to a route.
#[derive(Debug)]
pub struct Match<'a> {
    /// The route.
    pub route: &'a RouteSpec,
    /// Its key as text.
    pub key: &'a Arc<str>,
    /// Path parameters by name, as API Gateway's `pathParameters`.
    pub params: Vec<(String, String)>,
}

/// The route path in matchit's syntax: `{name}` stays, `{name+}` becomes `{*name}`.
fn matchit_path(path: &RoutePath) -> String {
    let mut out = String::new();
    for segment in path.segments() {
        out.push('/');
        match segment {
            PathSegment::Literal(text) => {
                // matchit treats braces as syntax; literal segments never contain them.
                out.push_str(text);
            }
            PathSegment::Param(name) => {
                out.push('{');
                out.push_str(name);
                out.push('}');
            }
            PathSegment::Greedy(name) => {
                out.push_str("{*");
                out.push_str(name);
                out.push('}');
            }
        }
    }
    if out.is_empty() {
        out.push('/');
    }
    out
}

impl RouteTable {
    /// Builds the table.
    ///
    /// # Errors
    /// When two routes cannot be told apart by the router.
    pub fn new(routes: &[RouteSpec]) -> Result<Self, RouteTableError> {
        let mut table = RouteTable {
            routes: routes.to_vec(),
            keys: routes
                .iter()
                .map(|r| Arc::from(r.key.to_string()))
                .collect(),
            ..RouteTable::default()
        };
        for (i, route) in routes.iter().enumerate() {
            match &route.key {
                RouteKey::Default => table.default = Some(i),
                RouteKey::Route { method, path } => {
                    let router = match method {
                        HttpMethod::Any => &mut table.any,
                        m => table.by_method.entry(*m).or_default(),
                    };
                    router
                        .insert(matchit_path(path), i)
                        .map_err(|e| RouteTableError {
                            route: route.key.to_string(),
                            reason: e.to_string(),
                        })?;
                }
            }
        }
        Ok(table)
    }

    /// Finds the route for a request: a route for the method first, then `ANY`, then
    /// `$default`. `method` is the request's method as sent, `path` its path as sent.
    ///
    /// The path is matched percent-decoded (`%2F` included; `+` stays `+`), as API
    /// Gateway decodes it: `/%61dmin/x` meets the route, and the auth, of `/admin/x`, and
    /// `/items/a%2Fb` is two segments below `/items`. The parameters are decoded pieces
    /// of it, as `pathParameters` carry them.
    pub fn find(&self, method: &str, path: &str) -> Option<Match<'_>> {
        let path: Cow<'_, str> = if path.contains('%') {
            Cow::Owned(crate::event::decode_path(path))
        } else {
            Cow::Borrowed(path)
        };
        let specific = method
            .parse::<HttpMethod>()
            .ok()
            .filter(|m| *m != HttpMethod::Any)
            .and_then(|m| self.by_method.get(&m));
        for router in specific.into_iter().chain(std::iter::once(&self.any)) {
            if let Ok(found) = router.at(&path) {
                return Some(Match {
                    route: &self.routes[*found.value],
                    key: &self.keys[*found.value],
                    params: found
                        .params
                        .iter()
                        .map(|(k, v)| (k.to_owned(), v.to_owned()))
                        .collect(),
                });
            }
        }
        self.default.map(|i| Match {
            route: &self.routes[i],
            key: &self.keys[i],
            params: Vec::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nimbus_core::{PayloadVersion, RouteAuth};

    fn route(key: &str, function: &str) -> RouteSpec {
        let key = if key == "$default" {
            RouteKey::Default
        } else {
            let (method, path) = key.split_once(' ').unwrap();
            RouteKey::Route {
                method: method.parse().unwrap(),
                path: path.parse().unwrap(),
            }
        };
        RouteSpec {
            key,
            function: function.to_owned(),
            auth: RouteAuth::None,
            payload: PayloadVersion::V2,
            rate_limit: None,
        }
    }

    #[test]
    fn most_specific_route_wins() {
        let table = RouteTable::new(&[
            route("GET /pets/dog/1", "exact"),
            route("GET /pets/dog/{id}", "param"),
            route("GET /pets/{proxy+}", "greedy"),
            route("ANY /{proxy+}", "any"),
            route("$default", "default"),
        ])
        .unwrap();
        let f = |m: &str, p: &str| table.find(m, p).unwrap().route.function.clone();
        assert_eq!(f("GET", "/pets/dog/1"), "exact");
        assert_eq!(f("GET", "/pets/dog/2"), "param");
        assert_eq!(f("GET", "/pets/cat/1"), "greedy");
        assert_eq!(f("POST", "/pets/dog/1"), "any");
        assert_eq!(f("GET", "/"), "default");
        let m = table.find("GET", "/pets/cat/tabby/3").unwrap();
        assert_eq!(
            m.params,
            vec![("proxy".to_owned(), "cat/tabby/3".to_owned())]
        );
        let m = table.find("GET", "/pets/dog/7").unwrap();
        assert_eq!(m.params, vec![("id".to_owned(), "7".to_owned())]);
        // The key's text names the route matched, `$default` included.
        let key = |m: &str, p: &str| table.find(m, p).unwrap().key.to_string();
        assert_eq!(key("GET", "/pets/dog/7"), "GET /pets/dog/{id}");
        assert_eq!(key("GET", "/pets/cat/1"), "GET /pets/{proxy+}");
        assert_eq!(key("DELETE", "/x"), "ANY /{proxy+}");
        assert_eq!(key("GET", "/"), "$default");
    }

    #[test]
    fn paths_are_matched_decoded() {
        let table = RouteTable::new(&[
            route("GET /admin/{proxy+}", "admin"),
            route("GET /items/{id}", "item"),
            route("ANY /{proxy+}", "public"),
        ])
        .unwrap();
        let found = |p: &str| {
            let m = table.find("GET", p).unwrap();
            (m.route.function.clone(), m.params)
        };
        let param = |k: &str, v: &str| vec![(k.to_owned(), v.to_owned())];
        assert_eq!(
            found("/%61dmin/users"),
            ("admin".to_owned(), param("proxy", "users"))
        );
        assert_eq!(
            found("/admin/a%20b+c"),
            ("admin".to_owned(), param("proxy", "a b+c"))
        );
        assert_eq!(
            found("/items/caf%C3%A9"),
            ("item".to_owned(), param("id", "café"))
        );
        // An encoded slash separates segments: no longer one `{id}`.
        assert_eq!(
            found("/items/a%2Fb"),
            ("public".to_owned(), param("proxy", "items/a/b"))
        );
        // A malformed escape stays as it is.
        assert_eq!(found("/items/%zz"), ("item".to_owned(), param("id", "%zz")));
    }

    #[test]
    fn no_route_no_match() {
        let table = RouteTable::new(&[route("POST /users", "register")]).unwrap();
        assert!(table.find("GET", "/users").is_none());
        assert!(table.find("POST", "/users/x").is_none());
        assert!(table.find("POST", "/users").is_some());
    }
}
