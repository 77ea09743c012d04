//! The inspector against real images made by the machine's `qemu-img`: safe images are
//! detected with exactly the virtual size `qemu-img info` reports and accepted under their
//! declared format; hostile ones are refused.
//!
//! `qemu-img` (Debian's `qemu-utils`) is required: the test fails when it is missing.

use std::path::{Path, PathBuf};
use std::process::Command;

use vela_inspect::{inspect_file, judge, Format, Inspector, Refusal, Report, Rules};

fn qemu_img(args: &[&str]) -> Vec<u8> {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .unwrap_or_else(|e| {
            panic!("qemu-img is required for this test (apt-get install qemu-utils): {e}")
        });
    assert!(
        out.status.success(),
        "qemu-img {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `qemu-img info`'s top-level `format` and `virtual-size` (with `-f` when given).
fn qemu_info(path: &Path, format: Option<&str>) -> (String, u64) {
    let p = path.to_str().expect("utf-8 path");
    let mut args = vec!["info", "--output=json"];
    if let Some(f) = format {
        args.extend(["-f", f]);
    }
    args.push(p);
    let v: serde_json::Value = serde_json::from_slice(&qemu_img(&args)).expect("json");
    (
        v["format"].as_str().expect("format").to_owned(),
        v["virtual-size"].as_u64().expect("virtual-size"),
    )
}

struct Corpus {
    dir: tempfile::TempDir,
}

impl Corpus {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        // 10 MiB with non-zero data in a few places, so the images have allocated clusters.
        let mut data = vec![0u8; 10 << 20];
        let mut x = 0x1234_5678_9abc_def1u64;
        for range in [
            0..4096,
            (1 << 20)..(3 << 20),
            (7 << 20) + 17..(7 << 20) + 70_000,
        ] {
            for b in &mut data[range] {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }
        }
        std::fs::write(dir.path().join("data.raw"), &data).expect("write");
        Corpus { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn p(&self, name: &str) -> String {
        self.path(name).to_str().expect("utf-8").to_owned()
    }

    /// `qemu-img convert` of the data into `name` with the given output options.
    fn convert(&self, name: &str, opts: &[&str]) -> PathBuf {
        let (src, dst) = (self.p("data.raw"), self.p(name));
        let mut args = vec!["convert", "-f", "raw"];
        args.extend_from_slice(opts);
        args.extend([src.as_str(), dst.as_str()]);
        qemu_img(&args);
        self.path(name)
    }

    /// `qemu-img create` of `name` with the given options.
    fn create(&self, name: &str, opts: &[&str], size: &str) -> PathBuf {
        let dst = self.p(name);
        let mut args = vec!["create"];
        args.extend_from_slice(opts);
        args.extend([dst.as_str(), size]);
        qemu_img(&args);
        self.path(name)
    }
}

/// Inspects a file with `inspect_file` and again in odd chunks, checking both agree.
fn inspect(path: &Path) -> Report {
    let report = inspect_file(path).expect("inspect");
    let data = std::fs::read(path).expect("read");
    let mut i = Inspector::new();
    for chunk in data.chunks(4093) {
        i.feed(chunk);
    }
    assert_eq!(
        i.finish(),
        report,
        "chunking changed the report of {path:?}"
    );
    report
}

fn bare(declared: &str, report: &Report) -> Result<vela_inspect::Accepted, Refusal> {
    judge(Some(declared), Some("bare"), report, &Rules::default())
}

/// File name, convert options, declared disk_format, detected format, `qemu-img info -f`.
type Case<'a> = (&'a str, &'a [&'a str], &'a str, Format, Option<&'a str>);

#[test]
fn safe_images_match_qemu_img() {
    let c = Corpus::new();
    let cases: &[Case] = &[
        (
            "v2.qcow2",
            &["-O", "qcow2", "-o", "compat=0.10"],
            "qcow2",
            Format::Qcow2,
            None,
        ),
        (
            "v3.qcow2",
            &["-O", "qcow2", "-o", "compat=1.1"],
            "qcow2",
            Format::Qcow2,
            None,
        ),
        (
            "stream.vmdk",
            &["-O", "vmdk", "-o", "subformat=streamOptimized"],
            "vmdk",
            Format::Vmdk,
            None,
        ),
        (
            "sparse.vmdk",
            &["-O", "vmdk", "-o", "subformat=monolithicSparse"],
            "vmdk",
            Format::Vmdk,
            None,
        ),
        ("dynamic.vhd", &["-O", "vpc"], "vhd", Format::Vhd, None),
        (
            "fixed.vhd",
            &["-O", "vpc", "-o", "subformat=fixed"],
            "vhd",
            Format::Raw,
            Some("vpc"),
        ),
        ("disk.vhdx", &["-O", "vhdx"], "vhdx", Format::Vhdx, None),
        ("disk.vdi", &["-O", "vdi"], "vdi", Format::Vdi, None),
        ("disk.raw", &["-O", "raw"], "raw", Format::Raw, None),
        (
            "disk.ploop",
            &["-O", "parallels"],
            "ploop",
            Format::Ploop,
            None,
        ),
    ];
    for (name, opts, declared, format, info_as) in cases {
        let path = c.convert(name, opts);
        let (qemu_format, qemu_size) = qemu_info(&path, *info_as);
        let r = inspect(&path);
        assert_eq!(r.format, *format, "{name}: {r:?}");
        assert!(r.violations.is_empty(), "{name}: {:?}", r.violations);
        assert!(r.multiple.is_empty() && r.error.is_none(), "{name}: {r:?}");
        let accepted = bare(declared, &r).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            accepted.virtual_size,
            Some(qemu_size),
            "{name} ({qemu_format})"
        );
        assert_eq!(accepted.detected, *format);
        if *format == Format::Raw && *declared == "vhd" {
            assert_eq!(r.vhd_footer_at_end, Some(qemu_size), "{name}");
        } else {
            assert_eq!(r.virtual_size, Some(qemu_size), "{name}");
        }
        let expected = match qemu_format.as_str() {
            "vpc" => "vhd",
            "parallels" => "ploop",
            f => f,
        };
        assert_eq!(
            expected,
            if *declared == "vhd" {
                "vhd"
            } else {
                format.name()
            }
        );
    }
}

#[test]
fn stream_optimized_layout_of_qemu_img() {
    // QEMU writes the grain directory in place (gd_offset ≠ GD_AT_END), so no footer is needed;
    // its descriptor uses upper-case `RW` extents and `ddb.` keys with spaces.
    let c = Corpus::new();
    let path = c.convert("s.vmdk", &["-O", "vmdk", "-o", "subformat=streamOptimized"]);
    let data = std::fs::read(&path).expect("read");
    assert_eq!(&data[..4], b"KDMV");
    assert_ne!(
        u64::from_le_bytes(data[56..64].try_into().expect("8")),
        u64::MAX
    );
    let r = inspect(&path);
    assert_eq!(r.vmdk_create_type.as_deref(), Some("streamOptimized"));
    assert!(r.violations.is_empty());
}

#[test]
fn vhd_creator_apps_size_like_qemu() {
    // Rewrite a dynamic VHD's creator app and current size (and checksum): QEMU sizes by CHS
    // for "vpc " and "qemu", by current_size for Hyper-V's "win ".
    let c = Corpus::new();
    let src = c.convert("base.vhd", &["-O", "vpc"]);
    let data = std::fs::read(src).expect("read");
    for app in [b"win ", b"vpc ", b"qemu"] {
        let mut d = data.clone();
        let mut footer = d[..512].to_vec();
        footer[28..32].copy_from_slice(app);
        footer[48..56].copy_from_slice(&(10u64 << 20).to_be_bytes());
        footer[64..68].fill(0);
        let sum = !footer
            .iter()
            .fold(0u32, |a, &b| a.wrapping_add(u32::from(b)));
        footer[64..68].copy_from_slice(&sum.to_be_bytes());
        d[..512].copy_from_slice(&footer);
        let n = d.len();
        d[n - 512..].copy_from_slice(&footer);
        let name = format!("app-{}.vhd", String::from_utf8_lossy(app).trim());
        std::fs::write(c.path(&name), &d).expect("write");
        let (_, qemu_size) = qemu_info(&c.path(&name), Some("vpc"));
        let r = inspect(&c.path(&name));
        assert_eq!(r.format, Format::Vhd);
        assert_eq!(r.virtual_size, Some(qemu_size), "creator {app:?}");
    }
}

#[test]
fn luks_volume_size_matches_qemu_img() {
    let c = Corpus::new();
    let path = c.create(
        "vol.luks",
        &[
            "-f",
            "luks",
            "--object",
            "secret,id=s0,data=pw",
            "-o",
            "key-secret=s0",
        ],
        "5M",
    );
    let (_, qemu_size) = qemu_info(&path, None);
    let r = inspect(&path);
    assert_eq!(r.format, Format::Luks);
    assert_eq!(r.virtual_size, Some(qemu_size));
    assert!(bare("luks", &r).is_ok());
    let as_raw = bare("raw", &r).expect("luks as raw");
    assert_eq!(as_raw.virtual_size, Some(r.size));
}

fn assert_unsafe(r: &Report, declared: &str, check: &str) {
    match bare(declared, r) {
        Err(Refusal::Unsafe { reasons, .. }) => {
            assert!(
                reasons.iter().any(|v| v.check == check),
                "expected {check}, got {reasons:?}"
            )
        }
        other => panic!("expected an unsafe refusal ({check}), got {other:?}"),
    }
}

fn assert_mismatch(r: &Report, declared: &str) {
    match bare(declared, r) {
        Err(e @ Refusal::Mismatch { .. }) => assert_eq!(
            e.to_string(),
            format!(
                "Image disk_format {declared} does not match stream data {}",
                r.format
            )
        ),
        other => panic!("expected a mismatch for {declared}, got {other:?}"),
    }
}

#[test]
fn hostile_images_are_refused() {
    let c = Corpus::new();

    let backing = c.create(
        "backing.qcow2",
        &["-f", "qcow2", "-b", "/etc/passwd", "-F", "raw"],
        "1M",
    );
    let r = inspect(&backing);
    assert_eq!(r.format, Format::Qcow2);
    assert_unsafe(&r, "qcow2", "backing_file");
    // Whatever the container.
    assert!(judge(Some("qcow2"), Some("ova"), &r, &Rules::default()).is_err());

    let data_file = c.p("external.raw");
    let df = c.create(
        "datafile.qcow2",
        &["-f", "qcow2", "-o", &format!("data_file={data_file}")],
        "1M",
    );
    let r = inspect(&df);
    assert_unsafe(&r, "qcow2", "data_file");

    let flat = c.create(
        "flat.vmdk",
        &["-f", "vmdk", "-o", "subformat=monolithicFlat"],
        "1M",
    );
    let r = inspect(&flat);
    assert_eq!(r.format, Format::Vmdk);
    assert_unsafe(&r, "vmdk", "descriptor");
    assert_unsafe(&r, "vmdk", "create_type");

    let passwd = c.path("passwd.vmdk");
    std::fs::write(
        &passwd,
        "# Disk DescriptorFile\nversion=1\nCID=12345678\nparentCID=ffffffff\n\
         createType=\"monolithicFlat\"\nRW 1 FLAT \"/etc/passwd\" 0\n",
    )
    .expect("write");
    // qemu-img itself would open /etc/passwd as the extent of this "vmdk".
    assert_eq!(qemu_info(&passwd, None).0, "vmdk");
    let r = inspect(&passwd);
    assert_eq!(r.format, Format::Vmdk);
    assert_unsafe(&r, "vmdk", "extents");
    assert_unsafe(&r, "raw", "descriptor");

    let noise = c.path("noise.bin");
    let mut x = 99u64;
    let bytes: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u8
        })
        .collect();
    std::fs::write(&noise, bytes).expect("write");
    let r = inspect(&noise);
    assert_eq!(r.format, Format::Raw);
    assert_mismatch(&r, "qcow2");
    assert_mismatch(&r, "vmdk");

    let qed = c.convert("disk.qed", &["-O", "qed"]);
    let r = inspect(&qed);
    assert_eq!(r.format, Format::Qed);
    assert_unsafe(&r, "qcow2", "banned");

    let qcow2 = c.convert("plain.qcow2", &["-O", "qcow2"]);
    assert_mismatch(&inspect(&qcow2), "raw");
    let vmdk = c.convert(
        "plain.vmdk",
        &["-O", "vmdk", "-o", "subformat=streamOptimized"],
    );
    assert_mismatch(&inspect(&vmdk), "raw");

    let enc = c.create(
        "enc.qcow2",
        &[
            "-f",
            "qcow2",
            "--object",
            "secret,id=s0,data=pw",
            "-o",
            "encrypt.format=luks,encrypt.key-secret=s0",
        ],
        "1M",
    );
    let r = inspect(&enc);
    assert_unsafe(&r, "qcow2", "encryption");
    let allow = Rules {
        allow_qcow2_encryption: true,
        ..Rules::default()
    };
    assert!(judge(Some("qcow2"), Some("bare"), &r, &allow).is_ok());
}
