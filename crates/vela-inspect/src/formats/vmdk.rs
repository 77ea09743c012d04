//! VMware VMDK: hosted sparse extents with an embedded descriptor, and plain-text descriptor
//! files.
//!
//! Sparse header (little-endian): magic `KDMV`, version u32 @4, flags u32 @8, capacity u64 @12
//! (sectors), grain_size u64 @20, desc_offset u64 @28 and desc_size u64 @36 (sectors),
//! num_gtes_per_gt u32 @44, rgd_offset u64 @48, gd_offset u64 @56. A stream-optimized image
//! whose header says the grain directory is at the end (`gd_offset` = all ones) ends with a
//! footer marker, a footer (a copy of the header with the real `gd_offset`) and an
//! end-of-stream marker, 512 bytes each.

use crate::stream::{has, le32, le64, Outcome, Stage, Want};
use crate::{Format, Violation, DEFAULT_VMDK_TYPES, TAIL_LEN};

const MAGIC: &[u8] = b"KDMV";
/// `gd_offset` of a stream-optimized image whose grain directory follows the data.
const GD_AT_END: u64 = u64::MAX;
/// The most descriptor bytes read (QEMU's limit is 1 MiB).
pub(crate) const MAX_DESCRIPTOR: usize = (1 << 20) - 1;
/// How much of a plain-text descriptor file is read for its details.
const MAX_TEXT: usize = 16 << 10;
/// Marker type of the footer marker.
const MARKER_FOOTER: u32 = 3;

/// What a descriptor says.
#[derive(Debug, Default)]
pub(crate) struct Descriptor {
    /// The `createType` value, unquoted.
    pub create_type: Option<String>,
    /// Failed checks.
    pub findings: Vec<(&'static str, String)>,
}

impl Descriptor {
    /// Records a failed check; only the first finding of each check is kept, so a descriptor
    /// of a million bad lines costs no more than one.
    fn find(&mut self, check: &'static str, reason: impl FnOnce() -> String) {
        if !self.findings.iter().any(|(c, _)| *c == check) {
            self.findings.push((check, reason()));
        }
    }
}

/// Cuts a line for quoting in a reason.
fn quote(line: &str) -> String {
    line.chars().take(60).collect()
}

/// Parses a descriptor: ASCII text up to the first NUL, one statement a line.
pub(crate) fn parse_descriptor(raw: &[u8]) -> Descriptor {
    let mut desc = Descriptor::default();
    let text = raw.split(|&b| b == 0).next().unwrap_or_default();
    let Some(text) = text
        .is_ascii()
        .then(|| std::str::from_utf8(text).ok())
        .flatten()
    else {
        desc.find("descriptor", || "descriptor is not ASCII text".into());
        return desc;
    };
    let mut extents = 0usize;
    let mut parent_cid: Option<String> = None;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("ddb")) {
            continue;
        }
        let first = line.split_ascii_whitespace().next().unwrap_or_default();
        if ["rw", "rdonly", "noaccess"]
            .iter()
            .any(|a| first.eq_ignore_ascii_case(a))
        {
            extents += 1;
            if line.contains('/') {
                desc.find("extents", || {
                    format!("extent names a path: {}", quote(line))
                });
            }
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            desc.find("descriptor", || {
                format!("unexpected descriptor line: {}", quote(line))
            });
            continue;
        };
        let key = key.trim();
        if key.is_empty() || key.contains(|c: char| c.is_ascii_whitespace()) {
            desc.find("descriptor", || {
                format!("invalid descriptor key: {}", quote(line))
            });
            continue;
        }
        let value = value.trim().trim_matches('"');
        if key.eq_ignore_ascii_case("createType") {
            // Bounded: an over-long value is kept cut (and so matches no allowed type).
            desc.create_type
                .get_or_insert_with(|| crate::stream::shorten(value.chars().take(256).collect()));
        } else if key.eq_ignore_ascii_case("parentCID") {
            parent_cid.get_or_insert_with(|| quote(value));
        } else if key.eq_ignore_ascii_case("parentFileNameHint") {
            desc.find("parent", || {
                format!("descriptor names a parent image: {}", quote(value))
            });
        }
    }
    if let Some(cid) = parent_cid {
        if !cid.eq_ignore_ascii_case("ffffffff") {
            desc.find("parent", || {
                format!("descriptor has parentCID {cid} (a delta disk)")
            });
        }
    }
    if extents == 0 {
        desc.find("extents", || "descriptor has no extent line".into());
    }
    desc
}

/// The `create_type` violation for a createType outside `allowed`.
pub(crate) fn create_type_violation(
    create_type: Option<&str>,
    allowed: &[impl AsRef<str>],
) -> Option<Violation> {
    match create_type {
        Some(t) if allowed.iter().any(|a| a.as_ref() == t) => None,
        Some(t) => Some(Violation {
            check: "create_type",
            reason: crate::stream::shorten(format!("VMDK createType {t} is not allowed")),
        }),
        None => Some(Violation {
            check: "create_type",
            reason: "VMDK descriptor has no createType".into(),
        }),
    }
}

/// Applies a parsed descriptor to an outcome (create type checked against the defaults).
fn apply(out: &mut Outcome, desc: Descriptor) {
    for (check, reason) in desc.findings {
        out.violate(check, reason);
    }
    if let Some(v) = create_type_violation(desc.create_type.as_deref(), DEFAULT_VMDK_TYPES) {
        out.violate(v.check, v.reason);
    }
    out.create_type = desc.create_type;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Step {
    Header,
    Descriptor,
    Done,
}

/// The parser of sparse VMDK extents.
pub(crate) struct Vmdk {
    out: Outcome,
    step: Step,
    version: u32,
    capacity: u64,
    grain: u64,
    gd_offset: u64,
}

impl Vmdk {
    /// A parser waiting for the sparse header.
    pub(crate) fn new() -> Self {
        Vmdk {
            out: Outcome::default(),
            step: Step::Header,
            version: 0,
            capacity: 0,
            grain: 0,
            gd_offset: 0,
        }
    }

    fn descriptor(&mut self, data: &[u8]) {
        self.step = Step::Done;
        apply(&mut self.out, parse_descriptor(data));
        if matches!(
            self.out.create_type.as_deref(),
            Some("monolithicSparse" | "streamOptimized")
        ) {
            self.out.virtual_size = self.capacity.checked_mul(512);
        }
    }

    /// Checks the footer marker, footer and end-of-stream marker at the end of the stream.
    fn check_footer(&mut self, tail: &[u8]) {
        let sector = |i: usize| tail.get(i * 512..(i + 1) * 512);
        let (Some(marker), Some(footer), Some(eos)) = (sector(0), sector(1), sector(2)) else {
            self.out.violate(
                "footer",
                "stream is too short for the VMDK footer the header announces",
            );
            return;
        };
        if le32(marker, 8) != 0 || le32(marker, 12) != MARKER_FOOTER {
            self.out.violate(
                "footer",
                "VMDK footer marker missing at the end of the stream",
            );
        } else if !has(footer, 0, MAGIC)
            || le64(footer, 56) == GD_AT_END
            || le32(footer, 4) != self.version
            || le64(footer, 12) != self.capacity
            || le64(footer, 20) != self.grain
        {
            self.out
                .violate("footer", "VMDK footer does not match the header");
        } else if eos.iter().any(|&b| b != 0) {
            self.out
                .violate("footer", "VMDK end-of-stream marker missing");
        }
    }
}

impl Stage for Vmdk {
    fn format(&self) -> Format {
        Format::Vmdk
    }

    fn start(&self) -> Want {
        Want::new(0, 64)
    }

    fn step(&mut self, d: &[u8], _end: u64) -> Option<Want> {
        match self.step {
            Step::Header => {
                if !has(d, 0, MAGIC) {
                    self.step = Step::Done;
                    return None;
                }
                self.out.matched = true;
                self.version = le32(d, 4);
                self.capacity = le64(d, 12);
                self.grain = le64(d, 20);
                self.gd_offset = le64(d, 56);
                if !(1..=3).contains(&self.version) {
                    self.out.violate(
                        "version",
                        format!("VMDK version {} is not 1, 2 or 3", self.version),
                    );
                }
                let desc_offset = le64(d, 28);
                let desc_size = le64(d, 36);
                if desc_offset != 1 || desc_size == 0 {
                    self.step = Step::Done;
                    self.out.violate(
                        "descriptor",
                        format!(
                            "VMDK descriptor at sector {desc_offset} ({desc_size} sectors); \
                             expected an embedded descriptor at sector 1"
                        ),
                    );
                    return None;
                }
                let len = usize::try_from(desc_size.saturating_mul(512))
                    .unwrap_or(usize::MAX)
                    .min(MAX_DESCRIPTOR);
                self.step = Step::Descriptor;
                Some(Want::new(512, len))
            }
            Step::Descriptor => {
                self.descriptor(d);
                None
            }
            Step::Done => None,
        }
    }

    fn partial(&mut self, _want: Want, data: &[u8]) {
        if self.step == Step::Descriptor {
            self.descriptor(data);
        }
    }

    fn finish(&mut self, _size: u64, tail: &[u8]) {
        if self.out.matched && self.gd_offset == GD_AT_END {
            let start = tail.len().saturating_sub(3 * 512);
            self.check_footer(tail.get(start..).unwrap_or_default());
        }
    }

    fn outcome(&self) -> &Outcome {
        &self.out
    }

    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.out
    }
}

const _: () = assert!(TAIL_LEN >= 3 * 512);

/// The parser of plain-text descriptor files (`# Disk DescriptorFile`): always refused, since
/// such a file only names other files holding the data.
pub(crate) struct VmdkText {
    out: Outcome,
    head: Vec<u8>,
}

impl VmdkText {
    /// A parser waiting for the first sector.
    pub(crate) fn new() -> Self {
        VmdkText {
            out: Outcome::default(),
            head: Vec::new(),
        }
    }

    /// Whether the first sector looks like a descriptor file.
    fn looks_like_descriptor(head: &[u8]) -> bool {
        let start = head
            .iter()
            .position(|b| !b.is_ascii_whitespace())
            .unwrap_or(head.len());
        let text = head.get(start..).unwrap_or_default();
        let banner = b"# Disk DescriptorFile";
        if text
            .get(..banner.len())
            .is_some_and(|t| t.eq_ignore_ascii_case(banner))
        {
            return true;
        }
        head.split(|&b| b == b'\n').any(|line| {
            line.split(|&b| b == b'=').nth(1).is_some()
                && line
                    .split(|&b| b == b'=')
                    .next()
                    .is_some_and(|k| k.trim_ascii().eq_ignore_ascii_case(b"createType"))
        })
    }

    /// Matches on the first sector; refuses and checks what the text says.
    fn detect(&mut self, head: &[u8]) -> bool {
        if !Self::looks_like_descriptor(head) {
            return false;
        }
        self.out.matched = true;
        self.out.violate(
            "descriptor",
            "a VMDK descriptor file refers to separate extent files",
        );
        true
    }

    fn parse(&mut self, rest: &[u8]) {
        let mut text = std::mem::take(&mut self.head);
        text.extend_from_slice(rest);
        apply(&mut self.out, parse_descriptor(&text));
    }
}

impl Stage for VmdkText {
    fn format(&self) -> Format {
        Format::Vmdk
    }

    fn start(&self) -> Want {
        Want::new(0, 512)
    }

    fn step(&mut self, d: &[u8], end: u64) -> Option<Want> {
        if end == 512 {
            if self.detect(d) {
                self.head = d.to_vec();
                return Some(Want::new(512, MAX_TEXT - 512));
            }
            return None;
        }
        self.parse(d);
        None
    }

    fn partial(&mut self, want: Want, data: &[u8]) {
        if want.off == 0 {
            if self.detect(data) {
                apply(&mut self.out, parse_descriptor(data));
            }
        } else {
            self.parse(data);
        }
    }

    fn outcome(&self) -> &Outcome {
        &self.out
    }

    fn outcome_mut(&mut self) -> &mut Outcome {
        &mut self.out
    }

    fn retained(&self) -> usize {
        self.head.capacity()
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::testutil::{checks, inspect};

    pub(crate) const GOOD: &str =
        "# Disk DescriptorFile\nversion=1\nCID=47cc6da6\nparentCID=ffffffff\n\
createType=\"streamOptimized\"\n\n# Extent description\nRW 20480 SPARSE \"x.vmdk\"\n\n\
# The Disk Data Base\n#DDB\n\nddb.virtualHWVersion = \"4\"\nddb.adapterType = \"ide\"\n";

    /// A sparse header with an embedded descriptor of `desc_sectors` at sector 1.
    pub(crate) fn image(desc: &str, gd_offset: u64) -> Vec<u8> {
        let desc_sectors = desc.len().div_ceil(512).max(1) as u64;
        let mut h = vec![0u8; 512 * (1 + desc_sectors as usize)];
        h[..4].copy_from_slice(b"KDMV");
        h[4..8].copy_from_slice(&3u32.to_le_bytes());
        h[12..20].copy_from_slice(&20480u64.to_le_bytes());
        h[20..28].copy_from_slice(&128u64.to_le_bytes());
        h[28..36].copy_from_slice(&1u64.to_le_bytes());
        h[36..44].copy_from_slice(&desc_sectors.to_le_bytes());
        h[44..48].copy_from_slice(&512u32.to_le_bytes());
        h[56..64].copy_from_slice(&gd_offset.to_le_bytes());
        h[512..512 + desc.len()].copy_from_slice(desc.as_bytes());
        h
    }

    /// The marker, footer and end-of-stream marker of a stream-optimized image.
    fn footer(header: &[u8]) -> Vec<u8> {
        let mut t = vec![0u8; 1536];
        t[..8].copy_from_slice(&2u64.to_le_bytes());
        t[12..16].copy_from_slice(&MARKER_FOOTER.to_le_bytes());
        t[512..1024].copy_from_slice(&header[..512]);
        t[512 + 56..512 + 64].copy_from_slice(&30u64.to_le_bytes());
        t
    }

    #[test]
    fn clean_stream_optimized() {
        let r = inspect(&image(GOOD, 26));
        assert_eq!(r.format, Format::Vmdk);
        assert_eq!(r.virtual_size, Some(20480 * 512));
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        assert_eq!(r.vmdk_create_type.as_deref(), Some("streamOptimized"));
    }

    #[test]
    fn monolithic_flat_and_missing_type() {
        let r = inspect(&image(
            &GOOD.replace("streamOptimized", "monolithicFlat"),
            26,
        ));
        assert_eq!(checks(&r), ["create_type"]);
        assert_eq!(r.virtual_size, None);
        let r = inspect(&image(&GOOD.replace("createType", "#createType"), 26));
        assert_eq!(checks(&r), ["create_type"]);
    }

    #[test]
    fn descriptor_lines() {
        let bad = GOOD.replace("version=1", "this is not a descriptor line");
        assert_eq!(checks(&inspect(&image(&bad, 26))), ["descriptor"]);
        let bad = GOOD.replace("version=1", "bad key=1");
        assert_eq!(checks(&inspect(&image(&bad, 26))), ["descriptor"]);
        let bad = GOOD.replace("\"x.vmdk\"", "\"/etc/passwd\"");
        assert_eq!(checks(&inspect(&image(&bad, 26))), ["extents"]);
        let bad = GOOD.replace("RW 20480", "# RW 20480");
        assert_eq!(checks(&inspect(&image(&bad, 26))), ["extents"]);
        let lower = GOOD.replace("RW 20480", "rdonly 20480");
        assert!(inspect(&image(&lower, 26)).violations.is_empty());
        let bad = GOOD.replace("CID=47cc6da6", "CID=47cc6da6\u{e9}");
        assert_eq!(
            checks(&inspect(&image(&bad, 26))),
            ["descriptor", "create_type"]
        );
        // Text after a NUL is not part of the descriptor.
        let after_nul = format!("{GOOD}\0/etc/passwd junk");
        assert!(inspect(&image(&after_nul, 26)).violations.is_empty());
    }

    #[test]
    fn parents() {
        let bad = GOOD.replace("parentCID=ffffffff", "parentCID=12345678");
        assert_eq!(checks(&inspect(&image(&bad, 26))), ["parent"]);
        let bad = GOOD.replace("version=1", "version=1\nparentFileNameHint=\"base.vmdk\"");
        assert_eq!(checks(&inspect(&image(&bad, 26))), ["parent"]);
        let ok = GOOD.replace("parentCID=ffffffff", "parentCID=\"FFFFFFFF\"");
        assert!(inspect(&image(&ok, 26)).violations.is_empty());
    }

    #[test]
    fn header_fields() {
        let mut img = image(GOOD, 26);
        img[4..8].copy_from_slice(&4u32.to_le_bytes());
        assert_eq!(checks(&inspect(&img)), ["version"]);
        let mut img = image(GOOD, 26);
        img[28..36].copy_from_slice(&2u64.to_le_bytes());
        assert_eq!(checks(&inspect(&img)), ["descriptor"]);
        let mut img = image(GOOD, 26);
        img[36..44].copy_from_slice(&0u64.to_le_bytes());
        assert_eq!(checks(&inspect(&img)), ["descriptor"]);
    }

    #[test]
    fn truncated_descriptor_is_still_checked() {
        let mut img = image(&GOOD.replace("\"x.vmdk\"", "\"/etc/passwd\""), 26);
        img[36..44].copy_from_slice(&1000u64.to_le_bytes());
        assert_eq!(checks(&inspect(&img)), ["extents"]);
    }

    #[test]
    fn footer_at_end() {
        let head = image(GOOD, GD_AT_END);
        let mut img = head.clone();
        img.extend_from_slice(&[7u8; 4096]);
        img.extend_from_slice(&footer(&head));
        let r = inspect(&img);
        assert!(r.violations.is_empty(), "{:?}", r.violations);
        // Missing altogether.
        let mut bare = head.clone();
        bare.extend_from_slice(&[0u8; 4096]);
        assert_eq!(checks(&inspect(&bare)), ["footer"]);
        // Too short to hold one.
        assert_eq!(checks(&inspect(&head[..1024])), ["footer"]);
        // A footer that disagrees with the header, or still says "at end".
        for (at, value) in [(512 + 12, 1u64), (512 + 20, 64), (512 + 56, GD_AT_END)] {
            let mut bad = img.clone();
            let n = bad.len() - 1536 + at;
            bad[n..n + 8].copy_from_slice(&value.to_le_bytes());
            assert_eq!(checks(&inspect(&bad)), ["footer"], "field {at}");
        }
        // No end-of-stream marker.
        let mut bad = img.clone();
        let n = bad.len() - 10;
        bad[n] = 1;
        assert_eq!(checks(&inspect(&bad)), ["footer"]);
        // A grain directory in place needs no footer.
        assert!(inspect(&image(GOOD, 26)).violations.is_empty());
    }

    #[test]
    fn text_descriptor_files() {
        let flat = "# Disk DescriptorFile\nversion=1\nCID=1\nparentCID=ffffffff\n\
createType=\"monolithicFlat\"\nRW 2048 FLAT \"x-flat.vmdk\" 0\n";
        let r = inspect(flat.as_bytes());
        assert_eq!(r.format, Format::Vmdk);
        assert_eq!(checks(&r), ["descriptor", "create_type"]);
        let passwd = GOOD.replace("\"x.vmdk\"", "\"/etc/passwd\"");
        let r = inspect(format!("  \n{passwd}").as_bytes());
        assert_eq!(checks(&r), ["descriptor", "extents"]);
        // Found by a createType line alone, also when the file is longer than a sector.
        let long = format!("version=1\ncreateType = \"vmfs\"\n{}", "#\n".repeat(600));
        let r = inspect(long.as_bytes());
        assert_eq!(r.format, Format::Vmdk);
        assert_eq!(checks(&r), ["descriptor", "extents", "create_type"]);
        // Plain text is not a descriptor.
        assert_eq!(inspect(b"hello world\ncreate type\n").format, Format::Raw);
    }
}
