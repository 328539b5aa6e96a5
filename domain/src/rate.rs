//! Each project's share of the publish rate (`PublishRatePerProject`): at
//! most so many publishes per project in each one-second window, so that one
//! project publishing flat out never makes the others' publishes fail. Pure:
//! `now` is a parameter.

use super::Timestamp;

/// At most `per_second` publishes of one project in each whole second (UTC,
/// Unix seconds); `None` (0 in the template) turns the share off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PublishShare {
    pub per_second: Option<u32>,
}

impl PublishShare {
    pub fn per_second(limit: u32) -> Self {
        Self {
            per_second: (limit > 0).then_some(limit),
        }
    }

    pub fn off() -> Self {
        Self { per_second: None }
    }

    /// The window a publish at `now` counts in.
    pub fn window(now: Timestamp) -> i64 {
        now.unix_seconds()
    }
}

/// `Retry-After` of a refused publish: the next window is less than a
/// second away, and the header counts whole seconds.
pub const RETRY_AFTER_SECS: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_turns_the_share_off() {
        assert_eq!(PublishShare::per_second(0), PublishShare::off());
        assert_eq!(PublishShare::per_second(5).per_second, Some(5));
        assert_eq!(PublishShare::off().per_second, None);
    }

    #[test]
    fn a_window_is_one_second() {
        let at = |raw| Timestamp::parse(raw).unwrap();
        let start = at("2026-12-01T10:00:00.000Z");
        let end = at("2026-12-01T10:00:00.999Z");
        assert_eq!(PublishShare::window(start), PublishShare::window(end));
        assert_eq!(
            PublishShare::window(at("2026-12-01T10:00:01.000Z")),
            PublishShare::window(start) + 1
        );
    }
}
