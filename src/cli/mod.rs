//! The command line: the one source of `--help`, the man pages and the shell completions
//! (rendered by the hidden `blobpin generate`), and the choice between vmtouch mode and the
//! modern subcommands.
//!
//! blobpin is vmtouch when invoked through a link named `vmtouch`, or when its first argument
//! is not a subcommand name (a file named like a subcommand is reached as `blobpin -- stat` or
//! `blobpin ./stat`). `blobpin --help`, `--version` and `help` are blobpin's own.

pub mod generate;
pub mod residency_cmd;
pub mod vmtouch;

use std::ffi::OsString;
use std::path::PathBuf;

use clap::{Args, CommandFactory, Parser, Subcommand};

use crate::exit;

/// Deploy static data blobs and keep them in RAM; a drop-in vmtouch.
///
/// Invoked with vmtouch's flags (or through a link named `vmtouch`), blobpin is vmtouch 1.3.1,
/// byte for byte: see VMTOUCH MODE below. The subcommands are the modern face of the same
/// engine.
#[derive(Debug, Parser)]
#[command(name = "blobpin", version, propagate_version = true)]
#[command(
    after_help = "Without a subcommand, blobpin takes vmtouch's flags: blobpin -v DIR, blobpin -tl FILE ..."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Show how much of each file is in the page cache.
    Stat(ResidencyArgs),
    /// Read files into the page cache (only the pages that are missing).
    Touch(ResidencyArgs),
    /// Drop files from the page cache.
    Evict(ResidencyArgs),
    /// Read files into the page cache and lock them there until SIGTERM or SIGINT.
    ///
    /// Checks first that the lock can work (memlock limit, CAP_IPC_LOCK, vm.max_map_count,
    /// memory cgroup, MemAvailable, --max-lock) and refuses with a diagnosis when it cannot;
    /// raises the soft memlock limit to the hard one when that is enough. Runs in the
    /// foreground (for systemd: readiness is sent to $NOTIFY_SOCKET once everything is
    /// locked), or with --daemon in the background. SIGTERM and SIGINT release the locks,
    /// remove the pidfile and exit 0; SIGHUP re-scans the paths and locks files that were
    /// replaced or grew.
    Lock(LockArgs),
    /// Run the rack- and datacentre-aware HTTP BitTorrent tracker (announce, scrape, metrics).
    ///
    /// Peers are located by the longest CIDR prefix of their source address in the topology
    /// file; the tracker then shapes the swarm: the origin feeds a few gateway hosts per data
    /// centre, gateways feed rack heads, and each host is handed only a parent that is ahead of
    /// it and a backup parent, ordered same rack, same DC, remote, origin. Without --topology,
    /// answers are random as in opentracker. SIGHUP re-reads --allow; SIGTERM and SIGINT stop.
    Tracker(TrackerArgs),
    /// Tell whether locking will work here, and if not, why and what exactly to change.
    ///
    /// Checks the memlock limits (bytes; limits.conf values are KiB), CAP_IPC_LOCK (also in
    /// user namespaces), limits.conf/limits.d as pam_limits evaluates them, pam_limits in the
    /// login PAM stacks, a systemd unit's LimitMEMLOCK=/AmbientCapabilities=, containers,
    /// the memory cgroup, MemAvailable and vm.max_map_count. Exit status: 0 it will work,
    /// 1 it will not (or, with --strict, a warning-level risk), 2 usage.
    #[command(after_long_help = DOCTOR_AFTER_HELP)]
    Doctor(DoctorArgs),
    /// Publish a blob: write its private .torrent and replace the feed's latest.json atomically.
    ///
    /// PATH is a file or a directory (a multi-file blob). Writes FEED/NAME/<version>.torrent,
    /// then FEED/NAME/latest.json (schema blobpin.feed/1: name, version, torrent file and its
    /// SHA-256, total size, SHA-256 of every file, creation time). Publishing the same content
    /// again changes nothing.
    Publish(PublishArgs),
    /// Fetch the feed's latest version into DIR, verify it, switch DIR/current to it atomically.
    ///
    /// Downloads into DIR/.staging/<version> from the swarm (resuming an interrupted download),
    /// verifies every piece and every file's SHA-256, fsyncs, moves it to DIR/versions/<version>,
    /// (with --lock) locks it in RAM through a detached `blobpin lock` that outlives this command,
    /// flips DIR/current -> versions/<version> with one rename, runs --exec, then releases and
    /// evicts older versions and prunes to --keep. The download never fills the page cache. Exit
    /// status: 0 switched or already up to date, 1 any error (the live version is untouched,
    /// except when only the --exec hook failed after the switch), 2 usage.
    Sync(SyncArgs),
    /// Serve a feed: HTTP feed, the tracker and a seeder of every published version in one process.
    ///
    /// For the build machine. Serves GET /feed/NAME/latest.json, /feed/NAME/<version>.torrent
    /// and /feed/NAME/files/PATH (the latest version's files, with Range: the source for
    /// `sync --prime-from http://ORIGIN/feed/NAME/files`), plus /metrics and /healthz. Runs the
    /// tracker (only published info-hashes are allowed; the seeder is the overlay's root) on
    /// --tracker-listen and seeds every published version (from the path recorded by `publish`
    /// in FEED/NAME/<version>.source, or FEED/NAME/<version>/) on --seed-listen. New publishes
    /// are picked up within a second, without a restart. Prints one line naming the three
    /// addresses, then one line per version seeded. SIGTERM and SIGINT stop it (exit 0).
    Origin(OriginArgs),
    /// Run a whole swarm on loopback: an origin, 4 hosts in two racks, a generated blob, locked.
    ///
    /// No set-up: generates a blob of pseudo-random data in a temporary directory (on disk,
    /// under target/ or $TMPDIR), publishes it, starts `blobpin origin` and four
    /// `blobpin sync --lock` hosts on 127.0.1.1, 127.0.1.2 (rack a) and 127.0.2.1, 127.0.2.2
    /// (rack b), each primed with one piece from the origin and shaped into an overlay by the
    /// origin's tracker, then prints the time, the
    /// throughput, where each host's bytes came from (origin, its rack, the other rack) and
    /// what each lock holder has locked (VmLck), and removes everything it started.
    Demo(DemoArgs),
    /// Seed the latest version of a feed entry from the published data until SIGTERM (a
    /// precursor of `origin`, used by the tests).
    #[command(hide = true)]
    Seed(SeedArgs),
    /// Write the man pages and shell completions (for packaging and the checked-in copies).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// The end of `blobpin doctor --help`: units, contexts and the finding ids.
const DOCTOR_AFTER_HELP: &str = "\
Units: RLIMIT_MEMLOCK, /proc/PID/limits, prlimit and docker --ulimit are in bytes; ulimit -l and \
limits.conf are in KiB (no suffixes: 64m is 64 KiB); systemd LimitMEMLOCK= is bytes with \
K/M/G/T suffixes (base 1024). Every limit is printed in bytes and KiB.

Context: without --user or --unit, the running process (its limits, capabilities, container, \
systemd service); --user NAME: a new login session of NAME (limits.conf through pam_limits); \
--unit NAME.service: that systemd service.

Finding ids (JSON schema blobpin.doctor/1, field findings[].id): memlock-ok, \
memlock-soft-raisable, memlock-hard-too-low, memlock-zero, cap-ipc-lock, cap-ipc-lock-userns, \
no-new-privs, cap-bounding-set, binary-nosuid, no-cap-sys-resource, max-lock, max-lock-unset, \
limits-predicted, limits-mismatch, limits-file-ignored, limits-file-unreadable, \
limits-unit-suffix, limits-invalid-line, limits-percent-ignored, limits-root-wildcard, \
limits-no-limits-entry, limits-soft-above-hard, pam-limits-missing, pam-limits-conf-option, \
sshd-usepam-off, unit-not-found, unit-limit-too-low, unit-ok, unit-bounding-set, \
running-in-service, container, cgroup-limit, cgroup-oom-kill-disable, cgroup-oom-kills, \
mem-available, max-map-count, rlimit-as, 32-bit, tmpfs, seccomp, lsm-confined, \
overcommit-strict, kernel-old-default; lock-shortfall is reported by blobpin lock after locking.";
/// Options of `blobpin publish`.
#[derive(Debug, Args)]
pub struct PublishArgs {
    /// The blob: a file or a directory.
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// The feed directory (served by `origin`).
    #[arg(long, value_name = "DIR")]
    pub feed: PathBuf,
    /// Feed name [default: the file name without extension, or the directory name].
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// Version name [default: UTC time and the first 8 hex digits of the info-hash].
    #[arg(long = "version-name", value_name = "VERSION")]
    pub version_name: Option<String>,
    /// Tracker announce URL to write into the torrent (repeatable; private torrents use the first).
    #[arg(long, value_name = "URL")]
    pub tracker: Vec<String>,
    /// Piece size (a power of two >= 16k, e.g. 1M) [default: chosen from the blob size].
    #[arg(long, value_name = "SIZE")]
    pub piece_size: Option<String>,
    /// Print the feed entry as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Options of `blobpin sync`.
#[derive(Debug, Args)]
pub struct SyncArgs {
    /// The feed: http://HOST:PORT/feed/NAME (as `origin` serves it) or a local feed directory.
    #[arg(value_name = "FEED_URL")]
    pub feed_url: String,
    /// The destination directory (holds current, versions/, .staging/, .locks/).
    #[arg(long, value_name = "DIR")]
    pub dest: PathBuf,
    /// Lock the new version in RAM before switching; the lock is held by a detached process until
    /// a later sync replaces it.
    #[arg(long)]
    pub lock: bool,
    /// Complete versions to keep, the live one included.
    #[arg(long, value_name = "N", default_value_t = 2, value_parser = clap::value_parser!(u32).range(1..))]
    pub keep: u32,
    /// Shell command to run after the switch, with BLOBPIN_VERSION and BLOBPIN_PATH set.
    #[arg(long, value_name = "CMD")]
    pub exec: Option<String>,
    /// Address to accept peers on (port 0: any free port).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:0")]
    pub listen: std::net::SocketAddr,
    /// A peer to fetch from (repeatable), besides those the torrent's tracker names.
    #[arg(long, value_name = "ADDR")]
    pub peer: Vec<std::net::SocketAddr>,
    /// Tracker announce URL to use besides the torrent's (repeatable).
    #[arg(long, value_name = "URL")]
    pub tracker: Vec<String>,
    /// The tracker's shared secret (`origin --key`, `tracker --key`): every announce URL, the
    /// torrent's own and --tracker, gets key=SECRET. Without it a keyed tracker refuses the
    /// announces ("missing key") and the sync finds only --peer peers.
    #[arg(long, value_name = "SECRET")]
    pub key: Option<String>,
    /// Upload cap, bytes per second (e.g. 40M or 40MB/s).
    #[arg(long, value_name = "RATE")]
    pub max_upload: Option<String>,
    /// Download cap, bytes per second (e.g. 40M or 40MB/s).
    #[arg(long, value_name = "RATE")]
    pub max_download: Option<String>,
    /// Give up when no data arrived for this many seconds (0: never).
    #[arg(long, value_name = "SECONDS", default_value_t = 60)]
    pub stall_timeout: u64,
    /// Reconnect to every peer after this many seconds without progress (0: never); works around
    /// librqbit 9.1 hosts that wait forever for pieces a peer never announced to them.
    #[arg(long, value_name = "SECONDS", default_value_t = 5)]
    pub reconnect_after: u64,
    /// Milliseconds between rounds of the waker, which keeps librqbit's requesters from idling
    /// up to 5 s after catching up with a parent (src/fetch/waker.rs); 0 turns it off.
    #[arg(long, value_name = "MS", default_value_t = 100, hide = true)]
    pub wake_ms: u64,
    /// Keep seeding this many seconds after the switch (SIGTERM or SIGINT ends it early, with
    /// exit status 0).
    #[arg(long, value_name = "SECONDS", default_value_t = 0)]
    pub seed_for: u64,
    /// Before joining, fetch one piece of the new version from this source (an http:// base URL
    /// serving the blob's files with Range support, or a local directory holding them), so this
    /// host can trade with peers that are still downloading (librqbit 9.1 ignores a peer that
    /// joins holding nothing) [default with an http(s) FEED_URL: FEED_URL/files, where the
    /// origin serves them; a failure there is only reported with -v].
    #[arg(long, value_name = "URL|DIR")]
    pub prime_from: Option<String>,
    /// Join without a primer piece (no default --prime-from).
    #[arg(long, conflicts_with = "prime_from")]
    pub no_prime: bool,
    /// Log each step on stderr (joined the swarm, live).
    #[arg(short, long)]
    pub verbose: bool,
    /// Print the report as JSON (schema blobpin.sync/1; with --watch, one line per change).
    #[arg(long)]
    pub json: bool,
    /// Run as a service: poll the feed every INTERVAL (e.g. 30s, 5m) and sync each new
    /// version; hold the locks in this process (detached holders of earlier one-shot syncs are
    /// taken over: the live version is locked here first, then they are stopped), keep seeding
    /// the live version, and hold DIR/.sync.lock so one-shot syncs of DIR refuse to run.
    /// READY=1 goes to $NOTIFY_SOCKET once the first version is live (and locked);
    /// SIGTERM/SIGINT stop cleanly (exit 0; the locks go with the process); SIGHUP polls now.
    /// A failed poll is logged and retried at the next one; the live version stays locked.
    #[arg(long, value_name = "INTERVAL")]
    pub watch: Option<String>,
    /// With --watch, serve Prometheus metrics on ADDR (GET /metrics): bytes downloaded by peer
    /// tier (rack, dc, remote, unknown, origin: placed with the topology the origin serves at
    /// FEED/../topology, the origin being the feed's host) and by peer address, uploaded,
    /// pieces, the live version, lock state, polls and the last poll's result.
    #[arg(long, value_name = "ADDR", requires = "watch")]
    pub metrics: Option<std::net::SocketAddr>,
}

/// Options of `blobpin origin`.
#[derive(Debug, Args)]
pub struct OriginArgs {
    /// The feed directory (as written by `blobpin publish --feed DIR`).
    #[arg(long, value_name = "DIR")]
    pub feed: PathBuf,
    /// Address to serve the feed on (HTTP).
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Address of the tracker, repeatable [default: the --listen IP, port + 1; any free port
    /// if 0].
    #[arg(long, value_name = "ADDR")]
    pub tracker_listen: Vec<std::net::SocketAddr>,
    /// Address the seeder accepts peers on [default: the --listen IP, port + 2; any free port
    /// if 0].
    #[arg(long, value_name = "ADDR")]
    pub seed_listen: Option<std::net::SocketAddr>,
    /// Topology file for the tracker (as `blobpin tracker --topology`).
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Shared secret: every announce must carry key=SECRET (a wrong or missing key gets the
    /// failure reason "invalid key" or "missing key"); give syncs `--key SECRET` too. The
    /// origin's own seeder announces with it.
    #[arg(long, value_name = "SECRET")]
    pub key: Option<String>,
    /// Upload cap of the seeder, bytes per second (e.g. 40M or 40MB/s).
    #[arg(long, value_name = "RATE")]
    pub max_upload: Option<String>,
    /// Download cap of the origin's BitTorrent session, bytes per second (e.g. 40M or 40MB/s).
    /// The origin only seeds (a version whose data fails its check is never downloaded into),
    /// so this is a bound for safety.
    #[arg(long, value_name = "RATE")]
    pub max_download: Option<String>,
    /// Also serve /metrics (Prometheus text) on this address: versions, bytes uploaded per
    /// version and by the data centre of the receiving peer, primer bytes, HTTP requests, and
    /// the tracker's figures (also served on --listen).
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<std::net::SocketAddr>,
    /// Emulation on one machine: locate a loopback client by the tracker address it connected
    /// to (give each emulated host the tracker URL on its own 127.x.y.z address).
    #[arg(long, hide = true)]
    pub loopback_racks: bool,
    /// Announce interval the tracker sends to clients, in seconds (a host that lost its parent
    /// is given a new one at its next announce).
    #[arg(long, value_name = "SECS", default_value_t = 15, value_parser = clap::value_parser!(u32).range(2..))]
    pub interval: u32,
    /// Milliseconds between scans of the feed directory.
    #[arg(long, value_name = "MS", default_value_t = 1000, hide = true)]
    pub scan_ms: u64,
}

/// Options of `blobpin demo`.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// Size of the generated blob (e.g. 256M).
    #[arg(long, value_name = "SIZE", default_value = "256M", hide = true)]
    pub size: String,
    /// Do not lock the hosts' copies (for machines where locking cannot work).
    #[arg(long)]
    pub no_lock: bool,
    /// Who feeds whom (for measurements): tracker (the origin's tracker shapes the overlay),
    /// peers (each host given its overlay parent and the origin by --peer), chain (the parent
    /// only), star (every host gets only the origin, no primer piece), tracker-unprimed.
    #[arg(long, value_name = "SHAPE", default_value = "tracker", hide = true,
          value_parser = ["tracker", "tracker-unprimed", "peers", "chain", "star"])]
    pub shape: String,
    /// Piece size of the published blob (4 MiB: fewer HAVE messages than the 256 KiB publish
    /// would choose, which librqbit 9.1 can drop when a connection lags).
    #[arg(long, value_name = "SIZE", default_value = "4M", hide = true)]
    pub piece_size: String,
    /// Seconds each host keeps seeding after it has the blob, before it locks and exits.
    #[arg(long, value_name = "SECONDS", default_value_t = 8, hide = true)]
    pub seed_for: u64,
    /// Keep the temporary directory (its path is printed).
    #[arg(long)]
    pub keep: bool,
}

/// Options of the hidden `blobpin seed`.
#[derive(Debug, Args)]
pub struct SeedArgs {
    /// The feed entry: http://HOST:PORT/feed/NAME or a local FEED/NAME directory.
    #[arg(long, value_name = "FEED_URL")]
    pub feed: String,
    /// The published file or directory.
    #[arg(long, value_name = "PATH")]
    pub data: PathBuf,
    /// Address to accept peers on.
    #[arg(long, value_name = "ADDR")]
    pub listen: std::net::SocketAddr,
    /// Peers to connect to (repeatable).
    #[arg(long, value_name = "ADDR")]
    pub peer: Vec<std::net::SocketAddr>,
    /// Upload cap, bytes per second (e.g. 4M).
    #[arg(long, value_name = "RATE")]
    pub max_upload: Option<String>,
    /// Test hook: play a bad peer that corrupts every block it uploads.
    #[arg(long)]
    pub corrupt_uploads: bool,
}

/// Options shared by stat, touch, evict and lock.
#[derive(Debug, Clone, Args)]
pub struct ResidencyArgs {
    /// Files or directories (directories are crawled recursively).
    #[arg(value_name = "PATH", required = true)]
    pub paths: Vec<PathBuf>,
    /// Print one JSON report (schema blobpin.residency/1) instead of text.
    #[arg(long)]
    pub json: bool,
    /// Print sizes as exact byte counts.
    #[arg(long)]
    pub bytes: bool,
    /// Print a line for every file.
    #[arg(short, long)]
    pub verbose: bool,
    /// Print nothing but errors.
    #[arg(short, long, conflicts_with_all = ["verbose", "json"])]
    pub quiet: bool,
    /// Operate on this byte range of every file: N, A-B, A- or -B (sizes as 4k, 1.5G).
    #[arg(short = 'p', long, value_name = "RANGE")]
    pub range: Option<String>,
    /// Only files whose name matches (a glob; matched against the whole path if it has a /).
    #[arg(long, value_name = "GLOB")]
    pub include: Vec<String>,
    /// Skip files and directories whose name matches (a glob, as --include).
    #[arg(long, value_name = "GLOB")]
    pub exclude: Vec<String>,
    /// Skip files larger than SIZE (e.g. 500M).
    #[arg(short = 'm', long, value_name = "SIZE")]
    pub max_file_size: Option<String>,
    /// Follow symbolic links.
    #[arg(short = 'L', long)]
    pub follow: bool,
    /// Do not cross into other filesystems than the first path's.
    #[arg(short = 'x', long)]
    pub one_file_system: bool,
    /// Process every hard link of a file (by default each file once).
    #[arg(long)]
    pub count_hardlinks: bool,
}

/// Options of `blobpin lock`.
#[derive(Debug, Args)]
pub struct LockArgs {
    #[command(flatten)]
    pub common: ResidencyArgs,
    /// Write the process id to FILE once everything is locked; removed on exit.
    #[arg(long, value_name = "FILE")]
    pub pidfile: Option<PathBuf>,
    /// Detach into the background; the command returns once everything is locked (exit 0)
    /// or locking failed (exit 1).
    #[arg(long)]
    pub daemon: bool,
    /// Refuse to lock more than SIZE in total (e.g. 20G); checked before locking anything.
    #[arg(long, value_name = "SIZE")]
    pub max_lock: Option<String>,
    /// Skip the preflight checks and call mlock right away.
    #[arg(long)]
    pub no_preflight: bool,
}

/// Options of `blobpin doctor`.
#[derive(Debug, Args)]
pub struct DoctorArgs {
    /// Files or directories that are to be locked (their size is measured).
    #[arg(value_name = "PATH", conflicts_with = "size")]
    pub paths: Vec<PathBuf>,
    /// Bytes to lock (sizes as 64M, 1.5G), instead of measuring PATHs.
    #[arg(long, value_name = "BYTES")]
    pub size: Option<String>,
    /// Evaluate limits.conf for this user (name or uid) as a new login session would get them.
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// Check the systemd service that will run blobpin (LimitMEMLOCK=, AmbientCapabilities=).
    #[arg(long, value_name = "NAME.service")]
    pub unit: Option<String>,
    /// Read /etc, /proc and /sys from DIR instead of the running system (an image, a fixture).
    #[arg(long, value_name = "DIR")]
    pub sysroot: Option<PathBuf>,
    /// Print every finding as JSON (schema blobpin.doctor/1): id, severity, evidence, fix.
    #[arg(long)]
    pub json: bool,
    /// Exit 1 on warning-level risks too.
    #[arg(long)]
    pub strict: bool,
    /// The --max-lock that `blobpin lock` will be given.
    #[arg(long, value_name = "SIZE")]
    pub max_lock: Option<String>,
}

/// Options of `blobpin tracker`.
#[derive(Debug, Args)]
pub struct TrackerArgs {
    /// Address to listen on (repeat for several; port 0 picks a free port, printed at start).
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:6969")]
    pub listen: Vec<std::net::SocketAddr>,
    /// Topology file: TOML with `[[dc]]` tables, each with `[[dc.rack]]` tables (name, cidrs),
    /// and an optional `[overlay]` table.
    #[arg(long, value_name = "FILE")]
    pub topology: Option<PathBuf>,
    /// Shared secret: every announce must carry key=SECRET.
    #[arg(long, value_name = "SECRET")]
    pub key: Option<String>,
    /// Only track the info-hashes listed in FILE (40 hex digits a line); re-read on SIGHUP.
    #[arg(long, value_name = "FILE")]
    pub allow: Option<PathBuf>,
    /// Announce interval sent to clients, in seconds; peers silent for two intervals expire.
    #[arg(long, value_name = "SECS", default_value_t = 15)]
    pub interval: u32,
    /// Minimum announce interval sent to clients, in seconds.
    #[arg(long, value_name = "SECS", default_value_t = 5)]
    pub min_interval: u32,
    /// Peers returned when an announce has no numwant.
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub numwant: usize,
    /// Most peers returned by one announce, whatever numwant asks.
    #[arg(long, value_name = "N", default_value_t = 200)]
    pub max_numwant: usize,
    /// Most swarms (info-hashes) held in memory.
    #[arg(long, value_name = "N", default_value_t = 100_000)]
    pub max_swarms: usize,
    /// Most peers held per swarm.
    #[arg(long, value_name = "N", default_value_t = 20_000)]
    pub max_peers: usize,
    /// Most client connections open at once.
    #[arg(long, value_name = "N", default_value_t = 4096)]
    pub max_connections: usize,
    /// The origin's address, IP or IP:PORT (repeatable). Without --origin and
    /// --origin-peer-id, a peer whose first announce has left=0 counts as an origin.
    #[arg(long, value_name = "ADDR")]
    pub origin: Vec<String>,
    /// Peers whose peer id starts with PREFIX are origins.
    #[arg(long, value_name = "PREFIX")]
    pub origin_peer_id: Option<String>,
    /// Worker threads (0: one per CPU).
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub threads: usize,
}

/// Options of the hidden `blobpin generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// Directory to write `man/` and `completions/` into.
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub out: PathBuf,
}

/// The clap command: [`Cli`] with the top level's `-h` removed (vmtouch's `-h` means "count
/// hard links"; `blobpin --help` still works, and every subcommand keeps `-h`).
pub fn command() -> clap::Command {
    let mut cmd = Cli::command();
    cmd.build();
    cmd.mut_arg("help", |a| {
        a.short(None)
            .help("Print help")
            .long_help("Print help (-h is vmtouch's hard-link flag at the top level)")
    })
}

/// Names that select the modern command line rather than vmtouch mode.
pub fn subcommand_names() -> Vec<String> {
    let mut names: Vec<String> = command()
        .get_subcommands()
        .map(|c| c.get_name().to_string())
        .collect();
    names.extend(["help", "--help", "--version", "-V"].map(String::from));
    names
}

/// Chooses vmtouch mode or the modern command line and runs it.
pub fn dispatch(argv: Vec<OsString>) -> i32 {
    let invoked = argv
        .first()
        .map(|a| {
            crate::residency::pattern::basename(std::os::unix::ffi::OsStrExt::as_bytes(
                a.as_os_str(),
            ))
            .to_vec()
        })
        .unwrap_or_default();
    if invoked == b"vmtouch" {
        return vmtouch::main(argv);
    }
    let first = argv.get(1).and_then(|a| a.to_str());
    match first {
        None => {
            let _ = command().print_help();
            exit::USAGE
        }
        Some(name) if subcommand_names().iter().any(|n| n == name) => modern(argv),
        _ => vmtouch::main(argv),
    }
}

fn modern(argv: Vec<OsString>) -> i32 {
    let parsed = command()
        .try_get_matches_from(argv)
        .and_then(|m| <Cli as clap::FromArgMatches>::from_arg_matches(&m));
    let cli = match parsed {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            };
        }
    };
    let result = match cli.command {
        Command::Stat(a) => residency_cmd::run(crate::residency::Op::Stat, &a, None),
        Command::Touch(a) => residency_cmd::run(crate::residency::Op::Touch, &a, None),
        Command::Evict(a) => residency_cmd::run(crate::residency::Op::Evict, &a, None),
        Command::Tracker(a) => run_tracker(&a),
        Command::Lock(a) => residency_cmd::lock(&a),
        Command::Doctor(a) => doctor_cmd(&a),
        Command::Publish(a) => crate::feed::publish::run(&a),
        #[cfg(feature = "fetch")]
        Command::Sync(a) => crate::sync::cmd::run(&a),
        #[cfg(feature = "fetch")]
        Command::Seed(a) => crate::fetch::seed::run(&a),
        #[cfg(not(feature = "fetch"))]
        Command::Sync(_) | Command::Seed(_) => Err(anyhow::anyhow!("built without fetch")),
        #[cfg(all(feature = "fetch", feature = "tracker"))]
        Command::Origin(a) => crate::origin::run(&a),
        #[cfg(all(feature = "fetch", feature = "tracker"))]
        Command::Demo(a) => crate::demo::run(&a),
        #[cfg(not(all(feature = "fetch", feature = "tracker")))]
        Command::Origin(_) | Command::Demo(_) => {
            Err(anyhow::anyhow!("built without fetch and tracker"))
        }
        Command::Generate(a) => generate::run(&a.out).map(|()| exit::OK),
    };
    match result {
        Ok(code) => code,
        // A reader that went away (`blobpin stat -v dir | head`) is not an error.
        Err(e) if is_broken_pipe(&e) => exit::OK,
        Err(e) => {
            eprintln!("blobpin: {e:#}");
            exit::FATAL
        }
    }
}

fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| {
        c.downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(feature = "tracker")]
fn run_tracker(args: &TrackerArgs) -> anyhow::Result<i32> {
    crate::tracker::run(args)
}

#[cfg(not(feature = "tracker"))]
fn run_tracker(_: &TrackerArgs) -> anyhow::Result<i32> {
    anyhow::bail!("built without tracker (rebuild with --features tracker)")
}

/// `blobpin doctor`: bad sizes, an unknown user or a missing sysroot are usage errors (2).
fn doctor_cmd(a: &DoctorArgs) -> anyhow::Result<i32> {
    use anyhow::Context as _;
    let size = |s: &Option<String>, flag: &str| -> anyhow::Result<Option<u64>> {
        s.as_deref()
            .map(|v| {
                crate::residency::range::parse_size(v)
                    .with_context(|| format!("invalid {flag} {v:?}"))
            })
            .transpose()
    };
    let result = (|| {
        let opts = crate::doctor::DoctorOptions {
            size: size(&a.size, "--size")?,
            paths: a.paths.clone(),
            residency: None,
            user: a.user.clone(),
            unit: a.unit.clone(),
            sysroot: a.sysroot.clone(),
            json: a.json,
            strict: a.strict,
            max_lock: size(&a.max_lock, "--max-lock")?,
        };
        crate::doctor::command(&opts)
    })();
    match result {
        Ok(c) => Ok(c),
        Err(e) => {
            eprintln!("blobpin: {e:#}");
            Ok(exit::USAGE)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clap_definition_is_consistent() {
        command().debug_assert();
    }

    #[test]
    fn every_value_argument_names_its_value() {
        fn check(cmd: &clap::Command) {
            for arg in cmd.get_arguments() {
                if arg.get_action().takes_values()
                    && arg.get_id() != "help"
                    && arg.get_id() != "version"
                {
                    assert!(
                        arg.get_value_names().is_some(),
                        "{} --{} has no value_name",
                        cmd.get_name(),
                        arg.get_id()
                    );
                }
            }
            for sub in cmd.get_subcommands() {
                check(sub);
            }
        }
        check(&command());
    }
}
