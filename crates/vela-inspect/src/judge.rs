//! Glance's rules for accepting uploaded image data, applied to a [`Report`].

use std::fmt;

use crate::formats::create_type_violation;
use crate::{Format, Report, Violation, DEFAULT_VMDK_TYPES};

/// Operator-tunable rules for [`judge`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    /// Accept encrypted qcow2 images (the `encryption` check becomes a warning). Default false.
    pub allow_qcow2_encryption: bool,
    /// VMDK `createType`s accepted. Default `streamOptimized`, `monolithicSparse`.
    pub vmdk_allowed_types: Vec<String>,
    /// Checks whose failure is only a warning. Default `mbr`.
    pub nonfatal_checks: Vec<String>,
    /// Refuse data whose format does not match the declared `disk_format` (bare containers).
    /// Default true; when false a mismatch is a warning.
    pub require_format_match: bool,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            allow_qcow2_encryption: false,
            vmdk_allowed_types: DEFAULT_VMDK_TYPES.iter().map(|t| (*t).to_owned()).collect(),
            nonfatal_checks: vec!["mbr".to_owned()],
            require_format_match: true,
        }
    }
}

/// Data that may be stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    /// The virtual size to record on the image (`None` when the data is not a disk in the
    /// declared format, e.g. a kernel for `aki`, or inside a non-bare container).
    pub virtual_size: Option<u64>,
    /// The detected format.
    pub detected: Format,
    /// Non-fatal findings, for the log.
    pub warnings: Vec<String>,
}

/// Why data is refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The data failed safety checks.
    Unsafe {
        /// The detected format.
        format: Format,
        /// Every failed check.
        reasons: Vec<Violation>,
    },
    /// The data is not in the declared `disk_format`.
    Mismatch {
        /// The declared `disk_format`.
        declared: String,
        /// The detected format.
        detected: Format,
    },
    /// The data matches several formats.
    Multiple(Vec<Format>),
    /// The data is in the declared format but its structure could not be read.
    Unreadable {
        /// The detected format.
        format: Format,
        /// What could not be read.
        reason: String,
    },
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Unsafe { format, reasons } => {
                let names: Vec<&str> = reasons.iter().map(|v| v.check).collect();
                write!(
                    f,
                    "Image failed safety checks ({format}: {})",
                    names.join(", ")
                )
            }
            Refusal::Mismatch { declared, detected } => write!(
                f,
                "Image disk_format {declared} does not match stream data {detected}"
            ),
            Refusal::Multiple(formats) => {
                let names: Vec<&str> = formats.iter().map(|f| f.name()).collect();
                write!(
                    f,
                    "Image format inspection failed (multiple formats: {})",
                    names.join(", ")
                )
            }
            Refusal::Unreadable { format, reason } => {
                write!(f, "Image format inspection failed ({format}: {reason})")
            }
        }
    }
}

impl std::error::Error for Refusal {}

/// Disk formats Glance knows that are not inspector formats: kernel, ramdisk and machine images.
const KERNEL_FORMATS: [&str; 3] = ["ami", "ari", "aki"];

/// Decides whether data inspected into `report` may be stored as an image with the given
/// `disk_format` and `container_format`.
///
/// Order: ambiguous data ([`Refusal::Multiple`]); failed safety checks of the detected format,
/// whatever the container ([`Refusal::Unsafe`], unless every failed check is in
/// [`Rules::nonfatal_checks`]); a structure that could not be read when the declared format is
/// the detected one ([`Refusal::Unreadable`]); then, for `bare` containers only, the format
/// match ([`Refusal::Mismatch`]). Non-bare containers (and a missing `disk_format`) are
/// accepted without a virtual size.
pub fn judge(
    disk_format: Option<&str>,
    container_format: Option<&str>,
    report: &Report,
    rules: &Rules,
) -> Result<Accepted, Refusal> {
    let detected = report.format;
    if !report.multiple.is_empty() {
        return Err(Refusal::Multiple(report.multiple.clone()));
    }

    let mut violations = report.violations.clone();
    if detected == Format::Vmdk {
        violations.retain(|v| v.check != "create_type");
        if let Some(v) = create_type_violation(
            report.vmdk_create_type.as_deref(),
            &rules.vmdk_allowed_types,
        ) {
            violations.push(v);
        }
    }
    let mut warnings = Vec::new();
    if rules.allow_qcow2_encryption && detected == Format::Qcow2 {
        violations.retain(|v| {
            let keep = v.check != "encryption";
            if !keep {
                warnings.push(v.to_string());
            }
            keep
        });
    }
    let fatal = violations
        .iter()
        .any(|v| !rules.nonfatal_checks.iter().any(|c| c == v.check));
    if fatal {
        return Err(Refusal::Unsafe {
            format: detected,
            reasons: violations,
        });
    }
    warnings.extend(violations.iter().map(Violation::to_string));

    let declared = disk_format.map(str::to_ascii_lowercase);
    if let (Some(reason), Some(d)) = (&report.error, &declared) {
        if d == detected.name() {
            return Err(Refusal::Unreadable {
                format: detected,
                reason: reason.clone(),
            });
        }
    }

    let accept = |virtual_size, warnings| {
        Ok(Accepted {
            virtual_size,
            detected,
            warnings,
        })
    };
    let Some(declared) = declared else {
        return accept(None, warnings);
    };
    if container_format.map(str::to_ascii_lowercase).as_deref() != Some("bare") {
        return accept(None, warnings);
    }

    let d = declared.as_str();
    let raw_like = matches!(detected, Format::Raw | Format::Gpt);
    if d == detected.name() {
        return accept(report.virtual_size, warnings);
    }
    if raw_like && (KERNEL_FORMATS.contains(&d) || d == "ploop") {
        return accept(None, warnings);
    }
    if d == "raw" && matches!(detected, Format::Gpt | Format::Iso | Format::Luks) {
        return accept(Some(report.size), warnings);
    }
    if d == "vhd" && raw_like {
        if let Some(size) = report.vhd_footer_at_end {
            return accept(Some(size), warnings);
        }
    }
    if detected == Format::Raw && Format::from_name(d).is_none() && !KERNEL_FORMATS.contains(&d) {
        return accept(None, warnings);
    }

    let mismatch = Refusal::Mismatch { declared, detected };
    if rules.require_format_match {
        return Err(mismatch);
    }
    warnings.push(mismatch.to_string());
    accept(None, warnings)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(format: Format) -> Report {
        Report {
            format,
            virtual_size: Some(1000),
            size: 2000,
            violations: Vec::new(),
            multiple: Vec::new(),
            vhd_footer_at_end: None,
            error: None,
            vmdk_create_type: None,
        }
    }

    fn with(format: Format, check: &'static str) -> Report {
        let mut r = report(format);
        r.violations.push(Violation {
            check,
            reason: "x".into(),
        });
        r
    }

    fn bare(declared: &str, r: &Report) -> Result<Accepted, Refusal> {
        judge(Some(declared), Some("bare"), r, &Rules::default())
    }

    #[test]
    fn matching_formats_keep_their_virtual_size() {
        for f in Format::ALL {
            if f == Format::Raw {
                continue;
            }
            let mut r = report(f);
            r.vmdk_create_type = Some("streamOptimized".into());
            let a = bare(f.name(), &r).expect("accepted");
            assert_eq!(a.virtual_size, Some(1000), "{f}");
            assert_eq!(a.detected, f);
        }
        let a = bare("raw", &report(Format::Raw)).expect("raw");
        assert_eq!(a.virtual_size, Some(1000));
        assert!(bare("QCOW2", &report(Format::Qcow2)).is_ok());
    }

    #[test]
    fn safety_violations_refuse_in_any_container() {
        let r = with(Format::Qcow2, "backing_file");
        for container in [Some("bare"), Some("ova"), Some("docker"), None] {
            let e = judge(Some("qcow2"), container, &r, &Rules::default()).expect_err("unsafe");
            assert_eq!(
                e.to_string(),
                "Image failed safety checks (qcow2: backing_file)"
            );
        }
        let mut r = with(Format::Qcow2, "backing_file");
        r.violations.push(Violation {
            check: "data_file",
            reason: "y".into(),
        });
        let e = bare("qcow2", &r).expect_err("unsafe");
        assert_eq!(
            e.to_string(),
            "Image failed safety checks (qcow2: backing_file, data_file)"
        );
    }

    #[test]
    fn nonfatal_checks_warn() {
        let r = with(Format::Gpt, "mbr");
        let a = bare("raw", &r).expect("mbr is non-fatal");
        assert_eq!(a.virtual_size, Some(2000));
        assert_eq!(a.warnings, ["mbr: x"]);
        let mut r = with(Format::Gpt, "mbr");
        r.violations.push(Violation {
            check: "banned",
            reason: "z".into(),
        });
        assert!(matches!(bare("raw", &r), Err(Refusal::Unsafe { .. })));
        let strict = Rules {
            nonfatal_checks: Vec::new(),
            ..Rules::default()
        };
        assert!(judge(
            Some("raw"),
            Some("bare"),
            &with(Format::Gpt, "mbr"),
            &strict
        )
        .is_err());
    }

    #[test]
    fn qcow2_encryption_can_be_allowed() {
        let r = with(Format::Qcow2, "encryption");
        assert!(bare("qcow2", &r).is_err());
        let rules = Rules {
            allow_qcow2_encryption: true,
            ..Rules::default()
        };
        let a = judge(Some("qcow2"), Some("bare"), &r, &rules).expect("allowed");
        assert_eq!(a.warnings.len(), 1);
    }

    #[test]
    fn vmdk_create_type_uses_the_rules() {
        let mut r = report(Format::Vmdk);
        r.vmdk_create_type = Some("monolithicFlat".into());
        // The inspector's own finding against the defaults is replaced by the rules' verdict.
        r.violations.push(Violation {
            check: "create_type",
            reason: "x".into(),
        });
        assert!(matches!(bare("vmdk", &r), Err(Refusal::Unsafe { .. })));
        let rules = Rules {
            vmdk_allowed_types: vec!["monolithicFlat".into()],
            ..Rules::default()
        };
        assert!(judge(Some("vmdk"), Some("bare"), &r, &rules).is_ok());
        r.vmdk_create_type = Some("streamOptimized".into());
        r.violations.clear();
        assert!(judge(Some("vmdk"), Some("bare"), &r, &rules).is_err());
        r.vmdk_create_type = None;
        assert!(bare("vmdk", &r).is_err());
    }

    #[test]
    fn multiple_and_unreadable() {
        let mut r = report(Format::Qcow2);
        r.multiple = vec![Format::Qcow2, Format::Iso];
        assert_eq!(
            bare("qcow2", &r),
            Err(Refusal::Multiple(vec![Format::Qcow2, Format::Iso]))
        );
        let mut r = report(Format::Vhdx);
        r.error = Some("metadata before position".into());
        assert!(matches!(bare("vhdx", &r), Err(Refusal::Unreadable { .. })));
        assert!(matches!(bare("raw", &r), Err(Refusal::Mismatch { .. })));
    }

    #[test]
    fn mismatches() {
        for f in [
            Format::Qcow2,
            Format::Vmdk,
            Format::Vhd,
            Format::Vhdx,
            Format::Vdi,
            Format::Ploop,
        ] {
            let mut r = report(f);
            r.vmdk_create_type = Some("streamOptimized".into());
            let e = bare("raw", &r).expect_err("declared raw");
            assert_eq!(
                e.to_string(),
                format!("Image disk_format raw does not match stream data {f}")
            );
        }
        assert!(bare("qcow2", &report(Format::Raw)).is_err());
        assert!(bare("vmdk", &report(Format::Qcow2)).is_err());
        assert!(bare("iso", &report(Format::Gpt)).is_err());
        assert!(bare("aki", &report(Format::Qcow2)).is_err());
        let lax = Rules {
            require_format_match: false,
            ..Rules::default()
        };
        let a = judge(Some("vmdk"), Some("bare"), &report(Format::Qcow2), &lax).expect("lax");
        assert_eq!(a.virtual_size, None);
        assert_eq!(
            a.warnings,
            ["Image disk_format vmdk does not match stream data qcow2"]
        );
    }

    #[test]
    fn glance_special_cases() {
        for d in ["ami", "ari", "aki", "ploop"] {
            for f in [Format::Raw, Format::Gpt] {
                assert_eq!(bare(d, &report(f)).map(|a| a.virtual_size), Ok(None));
            }
        }
        for f in [Format::Gpt, Format::Iso, Format::Luks] {
            assert_eq!(
                bare("raw", &report(f)).map(|a| a.virtual_size),
                Ok(Some(2000))
            );
        }
        let mut r = report(Format::Raw);
        assert!(bare("vhd", &r).is_err());
        r.vhd_footer_at_end = Some(1536);
        assert_eq!(bare("vhd", &r).map(|a| a.virtual_size), Ok(Some(1536)));
        // An operator-defined format: raw data is fine, anything else is not.
        assert_eq!(
            bare("bochs", &report(Format::Raw)).map(|a| a.virtual_size),
            Ok(None)
        );
        assert!(bare("bochs", &report(Format::Qcow2)).is_err());
    }

    #[test]
    fn non_bare_containers_skip_the_format_match() {
        for container in ["ova", "docker", "compressed", "ami"] {
            let a = judge(
                Some("raw"),
                Some(container),
                &report(Format::Qcow2),
                &Rules::default(),
            )
            .expect("accepted");
            assert_eq!(a.virtual_size, None);
        }
        let a = judge(
            None,
            Some("bare"),
            &report(Format::Qcow2),
            &Rules::default(),
        );
        assert_eq!(a.map(|a| a.virtual_size), Ok(None));
        let a = judge(
            Some("qcow2"),
            None,
            &report(Format::Qcow2),
            &Rules::default(),
        );
        assert_eq!(a.map(|a| a.virtual_size), Ok(None));
    }
}
