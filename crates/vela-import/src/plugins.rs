//! Import plugins (Glance's `image_import_plugins`), run in the configured order on the data
//! of every import but copy-image:
//! - `image_decompression`: a gzip or single-file zip archive is unpacked (not for the
//!   `compressed` container format);
//! - `image_conversion`: the data is converted to the configured format with `qemu-img
//!   convert`, after the format inspector and `qemu-img info` have both vetted it; `qemu-img`
//!   always gets `-f`, runs under CPU-time and address-space limits and a wall-clock timeout;
//! - `inject_image_metadata`: configured properties are added to the image;
//! - `no_op`.
//!
//! Data plugins work on files in the run's scratch directory; every output is bounded by the
//! image size cap.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures::StreamExt;
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use vela_domain::Image;

use crate::source::Source;
use crate::{Caller, ImportConfig, ImportError};

/// One import plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plugin {
    NoOp,
    InjectMetadata,
    Conversion,
    Decompression,
}

impl Plugin {
    /// Parses Glance's plugin name.
    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "no_op" => Plugin::NoOp,
            "inject_image_metadata" => Plugin::InjectMetadata,
            "image_conversion" => Plugin::Conversion,
            "image_decompression" => Plugin::Decompression,
            _ => return None,
        })
    }
}

/// `image_conversion` settings.
#[derive(Debug, Clone)]
pub struct Conversion {
    /// `raw`, `qcow2` or `vmdk`.
    pub output_format: String,
    pub qemu_img: PathBuf,
    /// `prlimit` (util-linux), which applies the limits below to `qemu-img`.
    pub prlimit: PathBuf,
    /// CPU seconds `qemu-img convert` may use.
    pub cpu_time_secs: u64,
    /// Address space of `qemu-img`, bytes.
    pub memory_bytes: u64,
    /// Wall-clock limit of one `qemu-img` run.
    pub timeout: Duration,
}

impl Default for Conversion {
    fn default() -> Self {
        Conversion {
            output_format: "raw".into(),
            qemu_img: "qemu-img".into(),
            prlimit: "prlimit".into(),
            cpu_time_secs: 3600,
            memory_bytes: 2 << 30,
            timeout: Duration::from_secs(6 * 3600),
        }
    }
}

/// `inject_image_metadata` settings.
#[derive(Debug, Clone, Default)]
pub struct Inject {
    pub properties: Vec<(String, String)>,
    /// Callers with one of these roles get nothing injected (Glance's default: `admin`).
    pub ignore_user_roles: Vec<String>,
}

/// What plugins change on the image.
#[derive(Debug, Clone, Default)]
pub struct Changes {
    pub disk_format: Option<String>,
    pub container_format: Option<String>,
    pub properties: Vec<(String, String)>,
}

impl Changes {
    pub fn apply(self, img: &mut Image) {
        if let Some(f) = self.disk_format {
            img.disk_format = Some(f);
        }
        if let Some(f) = self.container_format {
            img.container_format = Some(f);
        }
        for (k, v) in self.properties {
            img.properties.insert(k, v);
        }
    }
}

/// The plugins' result.
pub struct Outcome {
    pub source: Source,
    pub changes: Changes,
}

fn failed(m: impl Into<String>) -> ImportError {
    ImportError::failed(m)
}

/// Runs the configured plugins.
pub(crate) async fn run(
    cfg: &ImportConfig,
    img: &Image,
    caller: &Caller,
    mut source: Source,
    work: &Path,
    cancel: &CancellationToken,
) -> Result<Outcome, ImportError> {
    let mut changes = Changes::default();
    let mut disk_format = img.disk_format.clone().unwrap_or_default();
    let container = img.container_format.clone().unwrap_or_default();
    for (i, plugin) in cfg.plugins.iter().enumerate() {
        match plugin {
            Plugin::NoOp => {}
            Plugin::InjectMetadata => {
                if !caller
                    .roles
                    .iter()
                    .any(|r| cfg.inject.ignore_user_roles.contains(r))
                {
                    for (k, v) in &cfg.inject.properties {
                        if !k.starts_with("os_glance") {
                            changes.properties.push((k.clone(), v.clone()));
                        }
                    }
                }
            }
            Plugin::Decompression => {
                if container == "compressed" {
                    continue;
                }
                let input = local(&source, work, cfg.image_size_cap, cancel).await?;
                let out = work.join(format!("decompressed-{i}"));
                let cap = cfg.image_size_cap;
                let done = tokio::task::spawn_blocking({
                    let (input, out, cancel) = (input.clone(), out.clone(), cancel.clone());
                    move || decompress(&input, &out, cap, &cancel)
                })
                .await
                .map_err(|e| failed(e.to_string()))??;
                if done {
                    source = Source::Local(out);
                }
            }
            Plugin::Conversion => {
                let input = local(&source, work, cfg.image_size_cap, cancel).await?;
                let out = work.join(format!("converted-{i}"));
                if let Some(target) = convert(cfg, &disk_format, &input, &out, cancel).await? {
                    disk_format = target.clone();
                    changes.disk_format = Some(target);
                    changes.container_format = Some("bare".into());
                    source = Source::Local(out);
                }
            }
        }
    }
    Ok(Outcome { source, changes })
}

/// The data as a local file: in place when it is one, else copied into the scratch space.
async fn local(
    source: &Source,
    work: &Path,
    cap: u64,
    cancel: &CancellationToken,
) -> Result<PathBuf, ImportError> {
    if let Some(p) = source.local_path() {
        return Ok(p);
    }
    let path = work.join(format!("input-{}", uuid::Uuid::new_v4().simple()));
    let (mut body, _) = source
        .open()
        .await
        .map_err(|e| failed(format!("Reading the data to import: {e}")))?;
    let mut file = vela_store::fs::create_private_file(&path)
        .map(tokio::fs::File::from_std)
        .map_err(|e| failed(format!("scratch space: {e}")))?;
    let mut n = 0u64;
    use tokio::io::AsyncWriteExt;
    while let Some(chunk) = body.next().await {
        if cancel.is_cancelled() {
            return Err(ImportError::Cancelled("the import was cancelled".into()));
        }
        let chunk = chunk.map_err(|e| failed(format!("Reading the data to import: {e}")))?;
        n += chunk.len() as u64;
        if n > cap {
            return Err(failed(format!("The image is larger than {cap} bytes.")));
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| failed(format!("scratch space: {e}")))?;
    }
    file.flush()
        .await
        .map_err(|e| failed(format!("scratch space: {e}")))?;
    Ok(path)
}

/// Copies `r` to `out`, refusing more than `cap` bytes; checks `cancel` as it goes.
fn copy_capped(
    r: &mut dyn Read,
    out: &Path,
    cap: u64,
    cancel: &CancellationToken,
) -> Result<(), ImportError> {
    let mut w = std::io::BufWriter::with_capacity(
        1 << 20,
        vela_store::fs::create_private_file(out)
            .map_err(|e| failed(format!("scratch space: {e}")))?,
    );
    let mut buf = vec![0u8; 1 << 20];
    let mut n = 0u64;
    loop {
        if cancel.is_cancelled() {
            return Err(ImportError::Cancelled("the import was cancelled".into()));
        }
        let got = r
            .read(&mut buf)
            .map_err(|e| failed(format!("Decompressing the image failed: {e}")))?;
        if got == 0 {
            break;
        }
        n += got as u64;
        if n > cap {
            return Err(failed(format!(
                "The decompressed image is larger than {cap} bytes."
            )));
        }
        w.write_all(&buf[..got])
            .map_err(|e| failed(format!("scratch space: {e}")))?;
    }
    w.flush()
        .map_err(|e| failed(format!("scratch space: {e}")))?;
    Ok(())
}

/// Unpacks a gzip or single-file zip archive into `out`; false when the data is neither.
fn decompress(
    input: &Path,
    out: &Path,
    cap: u64,
    cancel: &CancellationToken,
) -> Result<bool, ImportError> {
    let mut f = std::fs::File::open(input).map_err(|e| failed(format!("scratch space: {e}")))?;
    let mut magic = [0u8; 4];
    let n = f.read(&mut magic).map_err(|e| failed(e.to_string()))?;
    let f = std::fs::File::open(input).map_err(|e| failed(format!("scratch space: {e}")))?;
    if n >= 2 && magic[..2] == [0x1f, 0x8b] {
        let mut r =
            flate2::read::MultiGzDecoder::new(std::io::BufReader::with_capacity(1 << 20, f));
        copy_capped(&mut r, out, cap, cancel)?;
        return Ok(true);
    }
    if n == 4 && magic == *b"PK\x03\x04" {
        let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
            .map_err(|e| failed(format!("The zip archive cannot be read: {e}")))?;
        let files: Vec<usize> = (0..zip.len())
            .filter(|i| zip.by_index(*i).map(|e| e.is_file()).unwrap_or(false))
            .collect();
        let [only] = files.as_slice() else {
            return Err(failed(
                "The zip archive must hold exactly one file to be imported.",
            ));
        };
        let mut entry = zip
            .by_index(*only)
            .map_err(|e| failed(format!("The zip archive cannot be read: {e}")))?;
        copy_capped(&mut entry, out, cap, cancel)?;
        return Ok(true);
    }
    Ok(false)
}

/// Runs a limited `qemu-img` and returns its standard output.
async fn qemu_img(
    c: &Conversion,
    args: &[&std::ffi::OsStr],
    cancel: &CancellationToken,
) -> Result<Vec<u8>, ImportError> {
    let mut cmd = tokio::process::Command::new(&c.prlimit);
    cmd.arg(format!("--cpu={}", c.cpu_time_secs))
        .arg(format!("--as={}", c.memory_bytes))
        .arg("--")
        .arg(&c.qemu_img)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true);
    let child = cmd
        .spawn()
        .map_err(|e| failed(format!("qemu-img could not be started: {e}")))?;
    let out = tokio::select! {
        out = child.wait_with_output() => out.map_err(|e| failed(format!("qemu-img failed: {e}")))?,
        _ = tokio::time::sleep(c.timeout) => return Err(failed("qemu-img took too long")),
        _ = cancel.cancelled() => return Err(ImportError::Cancelled("the import was cancelled".into())),
    };
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let err = err.trim();
        return Err(failed(format!(
            "qemu-img failed ({}): {}",
            out.status,
            err.chars().take(500).collect::<String>()
        )));
    }
    Ok(out.stdout)
}

/// Converts `input` (declared `disk_format`) to the configured format. None when nothing had
/// to be done (already that format, or an ISO).
async fn convert(
    cfg: &ImportConfig,
    disk_format: &str,
    input: &Path,
    out: &Path,
    cancel: &CancellationToken,
) -> Result<Option<String>, ImportError> {
    let c = &cfg.conversion;
    let target = c.output_format.as_str();
    let path = input.to_path_buf();
    let report = tokio::task::spawn_blocking(move || vela_inspect::inspect_file(&path))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("Reading the data to convert: {e}")))?;
    // The data must be safe, and what it claims to be (a GPT disk is raw).
    vela_inspect::judge(Some(disk_format), Some("bare"), &report, &cfg.inspection)
        .map_err(|r| failed(format!("Image not converted: {r}")))?;
    let detected = match report.format {
        vela_inspect::Format::Gpt => "raw",
        f => f.name(),
    };
    if detected == "iso" {
        return Ok(None);
    }
    if detected != disk_format {
        return Err(failed(format!(
            "Image disk_format {disk_format} does not match the data ({detected})"
        )));
    }
    if detected == target {
        return Ok(None);
    }
    let info = qemu_img(
        c,
        &[
            "info".as_ref(),
            "--output=json".as_ref(),
            "-f".as_ref(),
            detected.as_ref(),
            input.as_os_str(),
        ],
        cancel,
    )
    .await?;
    let info: Value =
        serde_json::from_slice(&info).map_err(|_| failed("qemu-img info did not answer JSON"))?;
    check_info(&info, detected, &cfg.inspection)?;
    let virtual_size = info["virtual-size"].as_u64().unwrap_or(u64::MAX);
    if target == "raw" && virtual_size > cfg.image_size_cap {
        return Err(failed(format!(
            "The converted image would be {virtual_size} bytes, more than the largest image allowed ({} bytes).",
            cfg.image_size_cap
        )));
    }
    qemu_img(
        c,
        &[
            "convert".as_ref(),
            "-f".as_ref(),
            detected.as_ref(),
            "-O".as_ref(),
            target.as_ref(),
            input.as_os_str(),
            out.as_os_str(),
        ],
        cancel,
    )
    .await?;
    let path = out.to_path_buf();
    let converted = tokio::task::spawn_blocking(move || vela_inspect::inspect_file(&path))
        .await
        .map_err(|e| failed(e.to_string()))?
        .map_err(|e| failed(format!("Reading the converted data: {e}")))?;
    let got = match converted.format {
        vela_inspect::Format::Gpt => "raw",
        f => f.name(),
    };
    if got != target || converted.size > cfg.image_size_cap {
        return Err(failed(format!(
            "The conversion produced {got} data, not {target}"
        )));
    }
    Ok(Some(target.to_owned()))
}

/// `qemu-img info` must agree with the inspector: same format, no backing file, no
/// external data file, an allowed VMDK subformat.
fn check_info(
    info: &Value,
    detected: &str,
    rules: &vela_inspect::Rules,
) -> Result<(), ImportError> {
    if info["format"] != detected {
        return Err(failed(format!(
            "qemu-img sees {} data, not {detected}",
            info["format"]
        )));
    }
    if info.get("backing-filename").is_some() || info.get("full-backing-filename").is_some() {
        return Err(failed("Image has a backing file"));
    }
    let data = &info["format-specific"]["data"];
    if data.get("data-file").is_some() {
        return Err(failed("Image has a data file"));
    }
    if detected == "vmdk" {
        let kind = data["create-type"].as_str().unwrap_or_default();
        if !rules.vmdk_allowed_types.iter().any(|t| t == kind) {
            return Err(failed(format!("VMDK subformat {kind} is not allowed")));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn qemu_img_info_checks() {
        let rules = vela_inspect::Rules::default();
        let ok = json!({"format": "qcow2", "format-specific": {"type": "qcow2", "data": {"compat": "1.1"}}});
        assert!(check_info(&ok, "qcow2", &rules).is_ok());
        assert!(check_info(&ok, "vmdk", &rules).is_err());
        let backing = json!({"format": "qcow2", "backing-filename": "/etc/passwd"});
        assert!(check_info(&backing, "qcow2", &rules).is_err());
        let data_file = json!({"format": "qcow2", "format-specific": {"data": {"data-file": "x"}}});
        assert!(check_info(&data_file, "qcow2", &rules).is_err());
        let flat = json!({"format": "vmdk", "format-specific": {"data": {"create-type": "monolithicFlat"}}});
        assert!(check_info(&flat, "vmdk", &rules).is_err());
        let sparse = json!({"format": "vmdk", "format-specific": {"data": {"create-type": "streamOptimized"}}});
        assert!(check_info(&sparse, "vmdk", &rules).is_ok());
    }

    #[test]
    fn decompresses_gzip_and_zip_with_a_cap() {
        let dir = tempfile::tempdir().unwrap();
        let data = vec![7u8; 100_000];
        let gz = dir.path().join("a.gz");
        let mut e = flate2::write::GzEncoder::new(
            std::fs::File::create(&gz).unwrap(),
            flate2::Compression::fast(),
        );
        e.write_all(&data).unwrap();
        e.finish().unwrap();
        let out = dir.path().join("out");
        let cancel = CancellationToken::new();
        assert!(decompress(&gz, &out, 1 << 20, &cancel).unwrap());
        assert_eq!(std::fs::read(&out).unwrap(), data);
        // A bomb: more output than the cap.
        assert!(decompress(&gz, &out, 1000, &cancel).is_err());

        let zp = dir.path().join("a.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&zp).unwrap());
        z.start_file("disk.raw", zip::write::SimpleFileOptions::default())
            .unwrap();
        z.write_all(&data).unwrap();
        z.finish().unwrap();
        assert!(decompress(&zp, &out, 1 << 20, &cancel).unwrap());
        assert_eq!(std::fs::read(&out).unwrap(), data);

        let plain = dir.path().join("plain");
        std::fs::write(&plain, b"not an archive").unwrap();
        assert!(!decompress(&plain, &out, 1 << 20, &cancel).unwrap());
    }
}
