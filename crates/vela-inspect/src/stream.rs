//! The streaming machinery shared by the format parsers.
//!
//! A parser is a [`Stage`]: a small state machine that asks for one byte range of the stream at
//! a time ([`Want`]). The [`Driver`] copies the requested bytes out of the chunks as they pass
//! and hands the complete range to the stage, which answers with the next range it needs (at or
//! after the end of the one it just got, since the stream cannot be rewound) or with nothing.
//!
//! Everything a stage decides is a function of the bytes of the requested ranges and of the
//! offset where each range ends, never of where the chunks were split, so a stream gives the
//! same result however it is cut into chunks.

use crate::{Format, Violation};

/// The longest reason kept in a [`Violation`] or error message, in bytes.
const MAX_REASON: usize = 200;

/// A byte range of the stream a stage wants to see next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Want {
    /// Absolute offset of the first byte.
    pub off: u64,
    /// Number of bytes (at least 1).
    pub len: usize,
}

impl Want {
    /// A range of `len` bytes (at least one) at `off`.
    pub(crate) fn new(off: u64, len: usize) -> Self {
        Want {
            off,
            len: len.max(1),
        }
    }
}

/// What a parser found out about the stream.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Outcome {
    /// The stream is in this parser's format.
    pub matched: bool,
    /// The virtual disk size the format declares.
    pub virtual_size: Option<u64>,
    /// Failed safety checks, at most one per check name.
    pub violations: Vec<Violation>,
    /// The structure could not be parsed.
    pub error: Option<String>,
    /// VMDK only: the descriptor's `createType`.
    pub create_type: Option<String>,
}

impl Outcome {
    /// Records a failed check (only the first reason of each check is kept, shortened).
    pub(crate) fn violate(&mut self, check: &'static str, reason: impl Into<String>) {
        if self.violations.iter().any(|v| v.check == check) {
            return;
        }
        self.violations.push(Violation {
            check,
            reason: shorten(reason.into()),
        });
    }

    /// Heap bytes held by the outcome's strings.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.violations.capacity() * std::mem::size_of::<Violation>()
            + self
                .violations
                .iter()
                .map(|v| v.reason.capacity())
                .sum::<usize>()
            + self.error.as_ref().map_or(0, String::capacity)
            + self.create_type.as_ref().map_or(0, String::capacity)
    }

    /// Records that the structure could not be parsed (the first reason is kept).
    pub(crate) fn fail(&mut self, reason: impl Into<String>) {
        if self.error.is_none() {
            self.error = Some(shorten(reason.into()));
        }
    }
}

/// Cuts a message to [`MAX_REASON`] bytes at a character boundary.
pub(crate) fn shorten(mut s: String) -> String {
    if s.len() > MAX_REASON {
        let mut cut = MAX_REASON;
        while cut > 0 && !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push('…');
    }
    s
}

/// A format parser, driven by a [`Driver`].
pub(crate) trait Stage: Send {
    /// The format this stage recognises.
    fn format(&self) -> Format;
    /// The first range it needs.
    fn start(&self) -> Want;
    /// Receives the complete bytes of the range it asked for, which ends at offset `end`;
    /// returns the next range it needs, if any.
    fn step(&mut self, data: &[u8], end: u64) -> Option<Want>;
    /// The stream ended inside the requested range `want`; `data` holds its first bytes.
    fn partial(&mut self, _want: Want, _data: &[u8]) {}
    /// The stream ended after `size` bytes; `tail` holds its last bytes (at most
    /// [`crate::TAIL_LEN`]).
    fn finish(&mut self, _size: u64, _tail: &[u8]) {}
    /// What the stage found.
    fn outcome(&self) -> &Outcome;
    /// What the stage found, to be moved into the report.
    fn outcome_mut(&mut self) -> &mut Outcome;
    /// Heap bytes the stage itself holds (captures are counted by the driver).
    fn retained(&self) -> usize {
        0
    }
}

/// The object-safe face of a driven stage, as the inspector holds it.
pub(crate) trait Parser: Send {
    /// Takes the chunk that starts at stream offset `pos`.
    fn feed(&mut self, pos: u64, data: &[u8]);
    /// The stream ended after `size` bytes with the given tail.
    fn finish(&mut self, size: u64, tail: &[u8]);
    /// The format of the stage.
    fn format(&self) -> Format;
    /// The stage's outcome.
    fn outcome(&self) -> &Outcome;
    /// Moves the outcome out.
    fn take_outcome(&mut self) -> Outcome;
    /// Heap bytes held (capture buffer and the stage's own), plus the stage's inline size.
    fn retained(&self) -> usize;
}

/// A range being collected.
struct Capture {
    want: Want,
    buf: Vec<u8>,
}

impl Capture {
    fn new(want: Want) -> Self {
        Capture {
            want,
            buf: Vec::new(),
        }
    }
}

/// Runs a [`Stage`] over the chunks of a stream.
pub(crate) struct Driver<S: Stage> {
    stage: S,
    cap: Option<Capture>,
}

impl<S: Stage> Driver<S> {
    /// Starts the stage at its first range.
    pub(crate) fn new(stage: S) -> Self {
        let first = stage.start();
        Driver {
            stage,
            cap: Some(Capture::new(first)),
        }
    }

    /// Hands a completed capture to the stage and arms the next one.
    fn complete(&mut self, cap: Capture) {
        let end = cap.want.off.saturating_add(cap.want.len as u64);
        let next = self.stage.step(&cap.buf, end);
        drop(cap);
        if let Some(want) = next {
            if want.off < end {
                let name = self.stage.format().name();
                self.stage.outcome_mut().fail(format!(
                    "{name} structure at offset {} lies before the stream position {end}",
                    want.off
                ));
            } else {
                self.cap = Some(Capture::new(want));
            }
        }
    }
}

impl<S: Stage> Parser for Driver<S> {
    fn feed(&mut self, pos: u64, data: &[u8]) {
        let chunk_end = pos.saturating_add(data.len() as u64);
        while let Some(cap) = self.cap.as_mut() {
            let have = cap.buf.len();
            let need = cap.want.off.saturating_add(have as u64);
            if need >= chunk_end {
                return;
            }
            if need < pos {
                // Cannot happen: ranges are only armed at or after the end of the previous one,
                // which lies inside the chunk being fed. Refuse to guess rather than panic.
                self.cap = None;
                self.stage
                    .outcome_mut()
                    .fail("internal: a requested range was already passed");
                return;
            }
            let start = usize::try_from(need - pos).unwrap_or(usize::MAX);
            let rest = data.get(start..).unwrap_or(&[]);
            let missing = cap.want.len.saturating_sub(have);
            let take = missing.min(rest.len());
            if cap.buf.capacity() == 0 {
                cap.buf.reserve_exact(cap.want.len);
            }
            cap.buf.extend_from_slice(rest.get(..take).unwrap_or(&[]));
            if cap.buf.len() < cap.want.len {
                return;
            }
            if let Some(done) = self.cap.take() {
                self.complete(done);
            }
        }
    }

    fn finish(&mut self, size: u64, tail: &[u8]) {
        if let Some(cap) = self.cap.take() {
            self.stage.partial(cap.want, &cap.buf);
        }
        self.stage.finish(size, tail);
    }

    fn format(&self) -> Format {
        self.stage.format()
    }

    fn outcome(&self) -> &Outcome {
        self.stage.outcome()
    }

    fn take_outcome(&mut self) -> Outcome {
        std::mem::take(self.stage.outcome_mut())
    }

    fn retained(&self) -> usize {
        let cap = self.cap.as_ref().map_or(0, |c| c.buf.capacity());
        std::mem::size_of::<Self>()
            + cap
            + self.stage.retained()
            + self.stage.outcome().heap_bytes()
    }
}

/// Big-endian `u16` at `off`, 0 when out of range.
pub(crate) fn be16(b: &[u8], off: usize) -> u16 {
    u16::from_be_bytes(arr(b, off))
}

/// Big-endian `u32` at `off`, 0 when out of range.
pub(crate) fn be32(b: &[u8], off: usize) -> u32 {
    u32::from_be_bytes(arr(b, off))
}

/// Big-endian `u64` at `off`, 0 when out of range.
pub(crate) fn be64(b: &[u8], off: usize) -> u64 {
    u64::from_be_bytes(arr(b, off))
}

/// Little-endian `u16` at `off`, 0 when out of range.
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(arr(b, off))
}

/// Little-endian `u32` at `off`, 0 when out of range.
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(arr(b, off))
}

/// Little-endian `u64` at `off`, 0 when out of range.
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(arr(b, off))
}

/// The byte at `off`, 0 when out of range.
pub(crate) fn byte(b: &[u8], off: usize) -> u8 {
    b.get(off).copied().unwrap_or(0)
}

/// `N` bytes at `off`, zeros when out of range.
fn arr<const N: usize>(b: &[u8], off: usize) -> [u8; N] {
    off.checked_add(N)
        .and_then(|end| b.get(off..end))
        .and_then(|s| s.try_into().ok())
        .unwrap_or([0; N])
}

/// Whether `b` holds `magic` at `off`.
pub(crate) fn has(b: &[u8], off: usize, magic: &[u8]) -> bool {
    off.checked_add(magic.len())
        .and_then(|end| b.get(off..end))
        .is_some_and(|s| s == magic)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Collects two ranges, the second chosen from the first.
    struct Two {
        out: Outcome,
        got: Vec<(u64, Vec<u8>)>,
    }

    impl Stage for Two {
        fn format(&self) -> Format {
            Format::Raw
        }
        fn start(&self) -> Want {
            Want::new(2, 3)
        }
        fn step(&mut self, data: &[u8], end: u64) -> Option<Want> {
            self.got.push((end, data.to_vec()));
            if self.got.len() == 1 {
                Some(Want::new(u64::from(byte(data, 0)), 2))
            } else {
                None
            }
        }
        fn outcome(&self) -> &Outcome {
            &self.out
        }
        fn outcome_mut(&mut self) -> &mut Outcome {
            &mut self.out
        }
    }

    fn run(data: &[u8], cut: usize) -> Driver<Two> {
        let mut d = Driver::new(Two {
            out: Outcome::default(),
            got: Vec::new(),
        });
        let mut pos = 0u64;
        for c in data.chunks(cut) {
            d.feed(pos, c);
            pos += c.len() as u64;
        }
        d.finish(pos, &[]);
        d
    }

    #[test]
    fn second_range_inside_the_same_chunk() {
        let data = [0, 1, 6, 0, 0, 9, 10, 11, 12];
        for cut in 1..=data.len() {
            let d = run(&data, cut);
            assert_eq!(
                d.stage.got,
                vec![(5, vec![6, 0, 0]), (8, vec![10, 11])],
                "cut {cut}"
            );
            assert_eq!(d.stage.out.error, None);
        }
    }

    #[test]
    fn a_range_behind_the_position_is_an_error() {
        let data = [0, 1, 3, 0, 0, 9, 10, 11, 12];
        for cut in 1..=data.len() {
            let d = run(&data, cut);
            assert_eq!(d.stage.got.len(), 1);
            assert!(d
                .stage
                .out
                .error
                .as_deref()
                .is_some_and(|e| e.contains("before")));
        }
    }

    #[test]
    fn readers_never_panic() {
        let b = [1u8, 2, 3];
        assert_eq!(be32(&b, 0), 0);
        assert_eq!(le16(&b, 1), 0x0302);
        assert_eq!(be64(&b, usize::MAX), 0);
        assert_eq!(byte(&b, 9), 0);
        assert!(!has(&b, usize::MAX, b"x"));
        assert!(has(&b, 1, &[2, 3]));
    }

    #[test]
    fn violations_are_deduplicated_and_shortened() {
        let mut o = Outcome::default();
        o.violate("a", "x".repeat(1000));
        o.violate("a", "second");
        assert_eq!(o.violations.len(), 1);
        assert!(o.violations[0].reason.len() <= MAX_REASON + 3);
    }
}
