//! proxy-wasm glue for [`Rule`]: one root context holding the rule, one tiny stream context.

use std::rc::Rc;

use proxy_wasm::traits::{Context, HttpContext, RootContext};
use proxy_wasm::types::{Action, ContextType, LogLevel};

use crate::Rule;

proxy_wasm::main! {{
    proxy_wasm::set_log_level(LogLevel::Warn);
    proxy_wasm::set_root_context(|_| -> Box<dyn RootContext> { Box::new(Root { rule: None }) });
}}

struct Root {
    rule: Option<Rc<Rule>>,
}

impl Context for Root {}

impl RootContext for Root {
    fn on_configure(&mut self, _size: usize) -> bool {
        let raw = self.get_plugin_configuration().unwrap_or_default();
        match Rule::parse(&raw) {
            Ok(rule) => {
                self.rule = Some(Rc::new(rule));
                true
            }
            Err(e) => {
                log::error!("{e}");
                false
            }
        }
    }

    fn create_http_context(&self, _context_id: u32) -> Option<Box<dyn HttpContext>> {
        Some(Box::new(Stream {
            rule: self.rule.clone(),
        }))
    }

    fn get_type(&self) -> Option<ContextType> {
        Some(ContextType::HttpContext)
    }
}

struct Stream {
    rule: Option<Rc<Rule>>,
}

impl Context for Stream {}

impl HttpContext for Stream {
    fn on_http_request_headers(&mut self, _num_headers: usize, _end_of_stream: bool) -> Action {
        let allowed = self.rule.as_ref().is_some_and(|rule| {
            let presented = self.get_http_request_header_bytes(&rule.header);
            rule.allows(presented.as_deref())
        });
        if allowed {
            if let Some(w) = self.rule.as_ref().and_then(|r| r.rewrite.clone()) {
                for name in &w.remove {
                    self.set_http_request_header(name, None);
                }
                for (name, value) in &w.set {
                    self.set_http_request_header(name, Some(value));
                }
                self.set_http_request_header(":path", Some(&w.path));
            }
            Action::Continue
        } else {
            match self.rule.as_ref().and_then(|r| r.reject.as_ref()) {
                Some(j) => {
                    if j.peer {
                        // What otlp-gate reads to know the client's address.
                        let _ = self.get_property(vec!["source", "address"]);
                    }
                    let headers = j
                        .headers
                        .iter()
                        .map(|(n, v)| (n.as_str(), v.as_str()))
                        .collect();
                    self.send_http_response(j.status, headers, Some(j.body()));
                }
                None => self.send_http_response(401, vec![], None),
            }
            Action::Pause
        }
    }
}
