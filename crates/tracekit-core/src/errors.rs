//! Error text for users.

/// The error followed by each of its sources (aya nests the kernel's answer and the verifier
/// log there), skipping a source whose text the message already contains.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let part = s.to_string();
        if !text.contains(&part) {
            text.push_str(": ");
            text.push_str(&part);
        }
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use std::fmt;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);

    impl fmt::Display for Layer {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(self.0)
        }
    }

    impl std::error::Error for Layer {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn sources_are_appended_once() {
        let e = Layer(
            "load failed: EPERM",
            Some(Box::new(Layer("EPERM", Some(Box::new(Layer("log", None)))))),
        );
        assert_eq!(super::chain(&e), "load failed: EPERM: log");
    }
}
