//! `loopgate backup PATH`, `loopgate backup verify PATH`, `loopgate restore PATH`.
//!
//! A backup is a folder: the database copy (`loopgate.db` from SQLite's `VACUUM INTO`, or
//! `loopgate.pgdump` from `pg_dump --format=custom`) and `manifest.json` with its SHA-256,
//! its size, the schema version and the rows per table. It is taken online, while `serve`
//! runs. A restore verifies the backup first, refuses to replace a database that holds
//! anything unless `--force`, and on SQLite keeps the replaced file beside it.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command as Process;

use anyhow::{Context, bail};
use chrono::{DateTime, Utc};
use loopgate_engine::store::snapshot::{self, Inspection};
use loopgate_engine::{Backend, Store};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::app::{lock_database, redact_url};
use crate::config::Settings;

pub const MANIFEST: &str = "manifest.json";
const SQLITE_FILE: &str = "loopgate.db";
const PG_FILE: &str = "loopgate.pgdump";
const FORMAT: &str = "loopgate-backup";

/// `manifest.json`: what the backup holds and how to check it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always `"loopgate-backup"`.
    pub format: String,
    /// Of this manifest's shape.
    pub version: u32,
    pub created_at: DateTime<Utc>,
    /// The loopgate that wrote it.
    pub loopgate: String,
    pub backend: Backend,
    /// The file beside the manifest: `loopgate.db` or `loopgate.pgdump`.
    pub file: String,
    pub bytes: u64,
    /// Hex SHA-256 of the file.
    pub sha256: String,
    /// The newest migration applied to the copied database.
    pub schema_version: i64,
    /// Rows per table when the copy was taken.
    pub counts: BTreeMap<String, i64>,
}

/// What `backup verify` found.
#[derive(Debug, Clone, Serialize)]
pub struct Verified {
    pub manifest: Manifest,
    pub path: PathBuf,
}

/// Takes a backup of the configured database into `target` (a new or empty folder, made
/// private: mode 0700, files 0600). The database is read as it is, never created nor
/// migrated: a backup before an upgrade must be restorable by the version that made it.
pub async fn create(settings: &Settings, target: &Path) -> anyhow::Result<Manifest> {
    if let Some(file) = Store::sqlite_file(&settings.store.url)
        && !file.exists()
    {
        bail!(
            "there is no database at {}: nothing to back up (is storage.url right? relative paths count from \
             the folder the command runs in)",
            file.display()
        );
    }
    let store = connect(settings).await?;
    let result = async {
        let current = store.inspect().await?;
        if current.schema_version == 0 {
            bail!("{} was never set up by loopgate: nothing to back up", redact_url(&settings.store.url));
        }
        prepare_folder(target)?;
        match store.backend() {
            Backend::Sqlite => create_sqlite(&store, target).await,
            Backend::Postgres => create_postgres(settings, current, target).await,
        }
    }
    .await;
    store.close().await;
    let manifest = result?;
    let text = serde_json::to_string_pretty(&manifest)? + "\n";
    write_private(&target.join(MANIFEST), text.as_bytes())?;
    Ok(manifest)
}

/// The configured database, opened as it is (no migration).
async fn connect(settings: &Settings) -> anyhow::Result<Store> {
    Store::connect(&settings.store, std::sync::Arc::new(loopgate_engine::SystemClock))
        .await
        .with_context(|| format!("opening {}", redact_url(&settings.store.url)))
}

fn prepare_folder(target: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::read_dir(target) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                bail!("{} is not empty: choose a new folder for the backup (nothing was written)", target.display());
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            std::fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(target)
                .with_context(|| format!("creating {}", target.display()))?;
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", target.display())),
    }
    Ok(())
}

async fn create_sqlite(store: &Store, target: &Path) -> anyhow::Result<Manifest> {
    let file = target.join(SQLITE_FILE);
    let partial = target.join(format!("{SQLITE_FILE}.partial"));
    let made = async {
        store.copy_sqlite_into(&partial).await.context("copying the database (VACUUM INTO)")?;
        private(&partial)?;
        // Counted from the copy itself, so the manifest describes exactly what is in it.
        let inspection = snapshot::inspect_sqlite_file(&partial).await.context("reading the copy")?;
        if inspection.integrity != "ok" {
            bail!("the copy failed its integrity check: {}", inspection.integrity);
        }
        sync_file(&partial)?;
        std::fs::rename(&partial, &file).with_context(|| format!("naming {}", file.display()))?;
        manifest(Backend::Sqlite, &file, inspection)
    }
    .await;
    if made.is_err() {
        // A failed copy is a full copy of the data: it does not stay behind.
        let _ = std::fs::remove_file(&partial);
    }
    made
}

/// The manifest's counts are taken just before the dump, in another snapshot: a dump taken
/// while serving may hold a few rows more than it says.
async fn create_postgres(settings: &Settings, inspection: Inspection, target: &Path) -> anyhow::Result<Manifest> {
    let file = target.join(PG_FILE);
    let status =
        pg_tool("pg_dump", &settings.store.url).args(["--format=custom", "--no-owner", "--file"]).arg(&file).status();
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => bail!("pg_dump failed ({status}); nothing usable was written"),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => bail!(
            "pg_dump is not installed: install the PostgreSQL client (Debian: postgresql-client), or take the \
             backup yourself with `pg_dump --format=custom --file loopgate.pgdump {}`",
            redact_url(&settings.store.url)
        ),
        Err(e) => return Err(e).context("running pg_dump"),
    }
    private(&file)?;
    sync_file(&file)?;
    manifest(Backend::Postgres, &file, inspection)
}

fn manifest(backend: Backend, file: &Path, inspection: Inspection) -> anyhow::Result<Manifest> {
    let (bytes, sha256) = digest(file)?;
    Ok(Manifest {
        format: FORMAT.into(),
        version: 1,
        created_at: Utc::now(),
        loopgate: env!("CARGO_PKG_VERSION").into(),
        backend,
        file: file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned(),
        bytes,
        sha256,
        schema_version: inspection.schema_version,
        counts: inspection.counts,
    })
}

/// Checks a backup folder: the manifest reads, the file has its size and checksum, and
/// the copy itself is sound (SQLite's integrity check and row counts; `pg_restore --list`
/// for a dump). Changes nothing.
pub async fn verify(path: &Path) -> anyhow::Result<Verified> {
    let manifest_path = path.join(MANIFEST);
    let text = std::fs::read_to_string(&manifest_path)
        .with_context(|| format!("{} is not a loopgate backup: cannot read {MANIFEST}", path.display()))?;
    let manifest: Manifest =
        serde_json::from_str(&text).with_context(|| format!("{} is damaged", manifest_path.display()))?;
    if manifest.format != FORMAT || manifest.version != 1 {
        bail!(
            "{} is not a backup this loopgate reads (format {:?} version {})",
            path.display(),
            manifest.format,
            manifest.version
        );
    }
    if manifest.file.contains(['/', '\\']) || manifest.file.starts_with('.') {
        bail!("{} names a file outside the backup: {:?}", manifest_path.display(), manifest.file);
    }
    let file = path.join(&manifest.file);
    let (bytes, sha256) = digest(&file).with_context(|| format!("reading {}", file.display()))?;
    if bytes != manifest.bytes || sha256 != manifest.sha256 {
        bail!(
            "{} does not match its manifest ({bytes} bytes, sha256 {sha256}; the manifest says {} bytes, {}): \
             the backup is damaged",
            file.display(),
            manifest.bytes,
            manifest.sha256
        );
    }
    match manifest.backend {
        Backend::Sqlite => {
            let inspection = snapshot::inspect_sqlite_file(&file).await.context("opening the copied database")?;
            if inspection.integrity != "ok" {
                bail!("{} fails SQLite's integrity check: {}", file.display(), inspection.integrity);
            }
            if inspection.counts != manifest.counts || inspection.schema_version != manifest.schema_version {
                bail!("{} holds other rows than its manifest says: the backup is damaged", file.display());
            }
        }
        Backend::Postgres => {
            let output = Process::new("pg_restore").arg("--list").arg(&file).output();
            match output {
                Ok(out) if out.status.success() => {}
                Ok(out) => {
                    bail!("pg_restore cannot read {}: {}", file.display(), String::from_utf8_lossy(&out.stderr).trim())
                }
                Err(e) => return Err(e).context("running pg_restore (install the PostgreSQL client)"),
            }
        }
    }
    if manifest.schema_version > snapshot::latest_schema_version() {
        bail!(
            "the backup has schema version {} but this loopgate knows only up to {}: restore it with a newer loopgate",
            manifest.schema_version,
            snapshot::latest_schema_version()
        );
    }
    Ok(Verified { manifest, path: path.to_owned() })
}

/// What `restore` did or, with `--dry-run`, would do.
#[derive(Debug, Clone, Serialize)]
pub struct Restored {
    pub dry_run: bool,
    pub database: String,
    /// Rows the replaced database held (`None`: no database yet, or one that cannot be
    /// read).
    pub replaced: Option<BTreeMap<String, i64>>,
    /// Why the current database could not be read, when it could not.
    pub unreadable: Option<String>,
    /// Rows the backup holds.
    pub restored: BTreeMap<String, i64>,
    /// A dry run over a database that holds data (or cannot be read): the real run needs
    /// `--force`.
    pub needs_force: bool,
    /// Where the replaced data was kept.
    pub kept: Option<PathBuf>,
}

/// Replaces the configured database with a verified backup. Refused while `serve` holds
/// a SQLite database, and for a database that holds anything (or cannot be read) unless
/// `force`. A dry run says what would happen and changes nothing.
pub async fn restore(settings: &Settings, path: &Path, dry_run: bool, force: bool) -> anyhow::Result<Restored> {
    let verified = verify(path).await.context("the backup did not verify; nothing was changed")?;
    let manifest = &verified.manifest;
    let database = redact_url(&settings.store.url);
    let target_backend = if settings.store.url.starts_with("sqlite:") { Backend::Sqlite } else { Backend::Postgres };
    if manifest.backend != target_backend {
        bail!(
            "the backup is of a {:?} database but storage.url is {database}: restore it into the same kind",
            manifest.backend
        );
    }
    match target_backend {
        Backend::Sqlite => restore_sqlite(settings, &verified, dry_run, force).await,
        Backend::Postgres => restore_postgres(settings, &verified, dry_run, force).await,
    }
}

fn refuse_non_empty(database: &str, current: &Inspection) -> anyhow::Error {
    let held: Vec<String> = current.counts.iter().filter(|(_, n)| **n > 0).map(|(t, n)| format!("{n} {t}")).collect();
    anyhow::anyhow!(
        "{database} is not empty ({}): nothing was changed; add --force to replace it (--dry-run shows what would be \
         replaced by what)",
        held.join(", ")
    )
}

/// A name no earlier restore took: `<database>.before-restore-<time>[-n]`.
fn kept_name(database: &Path) -> PathBuf {
    let stamp = Utc::now().format("%Y%m%dT%H%M%S%.3fZ").to_string();
    (0..)
        .map(|n| match n {
            0 => sibling(database, &format!(".before-restore-{stamp}")),
            n => sibling(database, &format!(".before-restore-{stamp}-{n}")),
        })
        .find(|p| !p.exists())
        .expect("a free name")
}

async fn restore_sqlite(
    settings: &Settings,
    verified: &Verified,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<Restored> {
    let database = Store::sqlite_file(&settings.store.url).context("storage.url names no SQLite file")?;
    let shown = database.display().to_string();
    // Held to the end: no `serve` may open the database while it is swapped. Taken for a
    // dry run too: what it reports would not hold while a service writes.
    let _lock = lock_database(&settings.store.url)?;
    let current =
        match database.exists() {
            false => None,
            true => Some(snapshot::inspect_sqlite_file(&database).await.map_err(|e| e.to_string()).and_then(|i| {
                if i.integrity == "ok" { Ok(i) } else { Err(format!("integrity check: {}", i.integrity)) }
            })),
        };
    let needs_force = match &current {
        None => false,
        Some(Ok(inspection)) => !inspection.is_empty(),
        Some(Err(_)) => true,
    };
    let mut restored = Restored {
        dry_run,
        database: shown.clone(),
        replaced: current.as_ref().and_then(|c| c.as_ref().ok()).map(|c| c.counts.clone()),
        unreadable: current.as_ref().and_then(|c| c.as_ref().err()).cloned(),
        restored: verified.manifest.counts.clone(),
        needs_force: needs_force && dry_run,
        kept: None,
    };
    if dry_run {
        return Ok(restored);
    }
    if needs_force && !force {
        return Err(match &current {
            Some(Ok(inspection)) => refuse_non_empty(&shown, inspection),
            Some(Err(why)) => anyhow::anyhow!(
                "{shown} cannot be read ({why}): nothing was changed; add --force to replace it (the damaged files \
                 are kept beside it)"
            ),
            None => unreachable!("a missing database needs no --force"),
        });
    }
    let source = verified.path.join(&verified.manifest.file);
    let incoming = sibling(&database, ".restoring");
    let swapped = async {
        std::fs::copy(&source, &incoming).with_context(|| format!("copying the backup to {}", incoming.display()))?;
        private(&incoming)?;
        sync_file(&incoming)?;
        match &current {
            None => {}
            Some(Ok(_)) => {
                // A clean copy of what is replaced, WAL included, kept beside it.
                let kept = kept_name(&database);
                let store = connect(settings).await?;
                let copied = store.copy_sqlite_into(&kept).await;
                store.close().await;
                copied.with_context(|| format!("keeping the replaced database as {}", kept.display()))?;
                restored.kept = Some(kept);
            }
            Some(Err(_)) => {
                // Unreadable: kept byte for byte, with its WAL, for whoever wants to look.
                let kept = kept_name(&database);
                for suffix in ["", "-wal", "-shm"] {
                    let from = sibling(&database, suffix);
                    if from.exists() {
                        let to = sibling(&kept, suffix);
                        std::fs::rename(&from, &to).with_context(|| format!("keeping {}", from.display()))?;
                    }
                }
                restored.kept = Some(kept);
            }
        }
        for suffix in ["-wal", "-shm"] {
            let _ = std::fs::remove_file(sibling(&database, suffix));
        }
        std::fs::rename(&incoming, &database).with_context(|| format!("putting the backup in place at {shown}"))?;
        anyhow::Ok(())
    }
    .await;
    if swapped.is_err() {
        let _ = std::fs::remove_file(&incoming);
    }
    swapped?;
    // Brings an older backup's schema up to this build's.
    let store = crate::cli::open_store(settings).await?;
    store.close().await;
    Ok(restored)
}

async fn restore_postgres(
    settings: &Settings,
    verified: &Verified,
    dry_run: bool,
    force: bool,
) -> anyhow::Result<Restored> {
    let database = redact_url(&settings.store.url);
    let store = connect(settings).await?;
    let current = store.inspect().await;
    store.close().await;
    let current = current?;
    let mut restored = Restored {
        dry_run,
        database: database.clone(),
        replaced: Some(current.counts.clone()),
        unreadable: None,
        restored: verified.manifest.counts.clone(),
        needs_force: dry_run && !current.is_empty(),
        kept: None,
    };
    if dry_run {
        return Ok(restored);
    }
    if !current.is_empty() {
        if !force {
            return Err(refuse_non_empty(&database, &current));
        }
        // What is replaced is dumped first, into the data folder.
        std::fs::create_dir_all(&settings.data_dir)?;
        let kept = settings.data_dir.join(format!("before-restore-{}.pgdump", Utc::now().format("%Y%m%dT%H%M%S%.3fZ")));
        let status = pg_tool("pg_dump", &settings.store.url)
            .args(["--format=custom", "--no-owner", "--file"])
            .arg(&kept)
            .status()
            .context("running pg_dump (install the PostgreSQL client)")?;
        if !status.success() {
            bail!("pg_dump of the database to be replaced failed ({status}); nothing was changed");
        }
        private(&kept)?;
        restored.kept = Some(kept);
    }
    let file = verified.path.join(&verified.manifest.file);
    let output = pg_tool("pg_restore", &settings.store.url)
        .args(["--clean", "--if-exists", "--no-owner", "--single-transaction"])
        .arg(&file)
        .output()
        .context("running pg_restore (install the PostgreSQL client)")?;
    if !output.status.success() {
        bail!("pg_restore failed; the database is as it was: {}", String::from_utf8_lossy(&output.stderr).trim());
    }
    let store = crate::cli::open_store(settings).await?;
    store.close().await;
    Ok(restored)
}

/// `pg_dump` or `pg_restore` for the database at `url`, with the password (if the URL
/// has one) in `PGPASSWORD` rather than on the command line, where `ps` would show it.
fn pg_tool(program: &str, url: &str) -> Process {
    let mut command = Process::new(program);
    let (mut url, mut password) = (url.to_owned(), None);
    if let Some((scheme, rest)) = url.split_once("://")
        && let Some((credentials, host)) = rest.split_once('@')
        && let Some((user, secret)) = credentials.split_once(':')
    {
        password = Some(percent_decode(secret));
        url = format!("{scheme}://{user}@{host}");
    }
    if let Some(password) = password {
        command.env("PGPASSWORD", password);
    }
    command.arg("--dbname").arg(url);
    command
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| char::from(b).to_digit(16);
        match (bytes[i], bytes.get(i + 1).copied().and_then(hex), bytes.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                out.push((high * 16 + low) as u8);
                i += 3;
            }
            (b, ..) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn sibling(database: &Path, suffix: &str) -> PathBuf {
    let mut name = database.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn digest(path: &Path) -> anyhow::Result<(u64, String)> {
    let mut file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 16];
    let mut bytes = 0u64;
    loop {
        let n = file.read(&mut buffer)?;
        if n == 0 {
            break;
        }
        bytes += n as u64;
        hasher.update(&buffer[..n]);
    }
    Ok((bytes, hasher.finalize().iter().map(|b| format!("{b:02x}")).collect()))
}

fn sync_file(path: &Path) -> anyhow::Result<()> {
    std::fs::File::open(path).and_then(|f| f.sync_all()).with_context(|| format!("syncing {}", path.display()))
}

/// Writes a file only its owner can read.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("writing {}", path.display()))?;
    file.write_all(bytes)?;
    file.sync_all()?;
    Ok(())
}

/// Backups hold everything loopgate knows about its owner: only the owner reads them.
fn private(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("making {} private", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_goes_to_the_environment_not_the_command_line() {
        let command = pg_tool("pg_dump", "postgres://loop:p%40ss%3Aword@db.internal:5432/loopgate");
        let args: Vec<_> = command.get_args().map(|a| a.to_string_lossy().into_owned()).collect();
        assert_eq!(args, ["--dbname", "postgres://loop@db.internal:5432/loopgate"]);
        let env: Vec<_> = command.get_envs().map(|(k, v)| (k.to_owned(), v.map(|v| v.to_owned()))).collect();
        assert_eq!(env, [("PGPASSWORD".into(), Some("p@ss:word".into()))]);
        let plain = pg_tool("pg_dump", "postgres://postgres@127.0.0.1:5432/postgres");
        assert_eq!(plain.get_envs().count(), 0);
    }
}
