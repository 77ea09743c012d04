//! Whole-inspector properties: chunking invariance, the memory bound, no panics on noise.

use crate::formats::{disk, qcow2, vhd, vmdk};
use crate::testutil::feed;
use crate::{judge, Format, Inspector, Report, Rules, MEMORY_BOUND};

/// xorshift64*: a small deterministic generator for the property tests.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
}

/// Feeds `data` cut at pseudo-random points, checking the memory bound after every chunk.
fn feed_random(data: &[u8], rng: &mut Rng, max_chunk: usize) -> Report {
    let mut i = Inspector::new();
    let mut rest = data;
    while !rest.is_empty() {
        let n = (1 + rng.below(max_chunk)).min(rest.len());
        let (a, b) = rest.split_at(n);
        i.feed(a);
        if rng.below(8) == 0 {
            i.feed(&[]);
        }
        assert!(i.retained_bytes() < MEMORY_BOUND);
        rest = b;
    }
    i.finish()
}

/// Hand-built images of every format, some hostile.
fn samples() -> Vec<Vec<u8>> {
    let mut v = vec![
        Vec::new(),
        b"QFI\xfb".to_vec(),
        qcow2::tests::header(2),
        qcow2::tests::header(3),
        vmdk::tests::image(vmdk::tests::GOOD, 26),
        vmdk::tests::image(vmdk::tests::GOOD, u64::MAX),
        vmdk::tests::GOOD.as_bytes().to_vec(),
        vhd::tests::footer(b"qemu", 3, 10 << 20),
        vhd::tests::vhdx(0x40000, 10 << 20, true),
        disk::tests::iso(10),
        disk::tests::mbr(&[(0, 0xEE, [0, 2, 0], 1)]),
    ];
    let mut data_file = qcow2::tests::header(3);
    data_file[112..116].copy_from_slice(b"DATA");
    data_file[116..120].copy_from_slice(&4u32.to_be_bytes());
    v.push(data_file);
    let mut fixed = vec![1u8; 5000];
    fixed.extend_from_slice(&vhd::tests::footer(b"win ", 2, 5000));
    v.push(fixed);
    // ISO + MBR + qcow2 at once: ambiguous.
    let mut multi = disk::tests::iso(4);
    multi[..512].copy_from_slice(&qcow2::tests::header(3));
    multi[510] = 0x55;
    multi[511] = 0xAA;
    v.push(multi);
    v
}

#[test]
fn chunking_does_not_change_the_report() {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut inputs = samples();
    // Mutants: flipped bytes in the headers, truncations, appended noise.
    for s in samples() {
        for _ in 0..6 {
            let mut m = s.clone();
            for _ in 0..1 + rng.below(8) {
                if !m.is_empty() {
                    let at = rng.below(m.len().min(2048));
                    m[at] = rng.next() as u8;
                }
            }
            if rng.below(3) == 0 {
                m.truncate(rng.below(m.len() + 1));
            }
            if rng.below(3) == 0 {
                let n = rng.below(3000);
                m.extend(rng.bytes(n));
            }
            inputs.push(m);
        }
    }
    inputs.push(rng.bytes(200_000));
    for data in &inputs {
        let whole = feed(data, &[data.len().max(1)]);
        assert_eq!(
            feed(data, &[1]),
            whole,
            "byte by byte, {} bytes",
            data.len()
        );
        for max in [3, 100, 4096, 70_000] {
            assert_eq!(
                feed_random(data, &mut rng, max),
                whole,
                "random cuts < {max}"
            );
        }
    }
}

#[test]
fn samples_are_what_they_claim() {
    let formats: Vec<Format> = samples().iter().map(|s| feed(s, &[4096]).format).collect();
    use Format::*;
    assert_eq!(
        formats,
        [Raw, Raw, Qcow2, Qcow2, Vmdk, Vmdk, Vmdk, Vhd, Vhdx, Iso, Gpt, Qcow2, Raw, Qcow2]
    );
    let multi = feed(samples().last().expect("sample"), &[4096]);
    assert_eq!(multi.multiple, [Qcow2, Iso, Gpt]);
    assert!(judge(Some("qcow2"), Some("bare"), &multi, &Rules::default()).is_err());
}

#[test]
fn memory_stays_bounded_on_hostile_streams() {
    let mut rng = Rng(7);
    // A VMDK claiming a huge descriptor, followed by 3 MiB of noise.
    let mut hostile = vmdk::tests::image(vmdk::tests::GOOD, u64::MAX);
    hostile[36..44].copy_from_slice(&u64::MAX.to_le_bytes());
    hostile.extend(rng.bytes(3 << 20));
    let mut i = Inspector::new();
    let mut peak = 0;
    for chunk in hostile.chunks(777) {
        i.feed(chunk);
        peak = peak.max(i.retained_bytes());
        assert!(i.retained_bytes() < MEMORY_BOUND, "{}", i.retained_bytes());
    }
    // The descriptor buffer (1 MiB − 1) was really held, and is counted.
    assert!(peak > vmdk::MAX_DESCRIPTOR, "peak {peak}");
    let r = i.finish();
    assert_eq!(r.format, Format::Vmdk);
    assert!(!r.violations.is_empty());

    // A VHDX with the largest tables, then a long stream of zeros.
    let mut v = vhd::tests::vhdx(0x50000, 1, false);
    v[0x30008..0x3000c].copy_from_slice(&2047u32.to_le_bytes());
    let mut i = Inspector::new();
    for chunk in v.chunks(1 << 16) {
        i.feed(chunk);
        assert!(i.retained_bytes() < MEMORY_BOUND);
    }
    let zeros = vec![0u8; 1 << 20];
    for _ in 0..64 {
        i.feed(&zeros);
    }
    assert!(
        i.retained_bytes() < 64 << 10,
        "idle inspector holds {}",
        i.retained_bytes()
    );
    assert_eq!(i.size(), v.len() as u64 + (64 << 20));
}

#[test]
fn noise_never_panics_and_judges() {
    let mut rng = Rng(42);
    for n in [0, 1, 100, 511, 512, 513, 4096, 40_000] {
        for _ in 0..20 {
            let data = rng.bytes(n);
            let r = feed_random(&data, &mut rng, 1000);
            assert_eq!(r.size, n as u64);
            for d in ["raw", "qcow2", "vmdk", "iso", "aki"] {
                let _ = judge(Some(d), Some("bare"), &r, &Rules::default());
            }
        }
    }
}

#[test]
fn raw_reports_the_byte_count() {
    let r = feed(&[0u8; 10_000], &[333]);
    assert_eq!(r.format, Format::Raw);
    assert_eq!(r.virtual_size, Some(10_000));
    assert_eq!(r.size, 10_000);
    assert!(r.violations.is_empty() && r.multiple.is_empty() && r.error.is_none());
}

#[test]
fn format_names_round_trip() {
    for f in Format::ALL {
        assert_eq!(Format::from_name(f.name()), Some(f));
        assert_eq!(f.to_string(), f.name());
    }
    assert_eq!(Format::from_name("ami"), None);
}

#[test]
fn a_descriptor_of_many_bad_lines_costs_little() {
    // 1 MiB of bad lines and one enormous createType: one finding each, values cut short.
    let mut desc = format!("createType=\"{}\"\n", "x".repeat(300_000));
    while desc.len() < vmdk::MAX_DESCRIPTOR {
        desc.push_str("bad line\nRW 1 FLAT \"/etc/passwd\" 0\n");
    }
    desc.truncate(vmdk::MAX_DESCRIPTOR);
    let img = vmdk::tests::image(&desc, 26);
    let mut i = Inspector::new();
    for chunk in img.chunks(1 << 16) {
        i.feed(chunk);
    }
    assert!(i.retained_bytes() < 64 << 10, "{}", i.retained_bytes());
    let r = i.finish();
    assert_eq!(
        r.violations.iter().map(|v| v.check).collect::<Vec<_>>(),
        ["descriptor", "extents", "create_type"]
    );
    assert!(r.violations[1].reason.contains("names a path"));
    assert!(r.vmdk_create_type.is_some_and(|t| t.len() < 300));
}
