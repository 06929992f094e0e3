//! vmtouch mode: vmtouch 1.3.1's command line, output and exit codes, exactly.
//!
//! The flag grammar is glibc `getopt` with the optstring `tevqlLdfFh0i:I:p:b:m:P:wo:`:
//! arguments are permuted (options may follow paths) unless `POSIXLY_CORRECT` is set, `--`
//! ends the options, flags cluster (`-vt`, `-m64M`), and getopt's errors name `argv[0]` as
//! invoked. Options are applied in order, so the first bad value is the one reported.
//! Decisions on vmtouch's known quirks are listed in the man page (section VMTOUCH
//! COMPATIBILITY).

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, IsTerminal, LineWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::time::Instant;

use crate::exit;
use crate::report::vmtouch as out;
use crate::residency::{
    ChartPhase, Crawler, Fatal, Op, Options, PageMap, Pattern, Range, Sink, Warning,
};
use crate::sys;

/// vmtouch's optstring (HEAD's, with `-o`).
const OPTSTRING: &[u8] = b"tevqlLdfFh0i:I:p:b:m:P:wo:";
const MAX_PATTERNS: usize = 1024;
const MAX_PATTERN_LEN: usize = 1024;

/// One result of the getopt scan.
#[derive(Debug, PartialEq, Eq)]
pub enum Item {
    /// A flag and, for options taking one, its argument.
    Opt(u8, Option<OsString>),
    /// `invalid option -- 'c'`
    Invalid(u8),
    /// `option requires an argument -- 'c'`
    MissingArg(u8),
}

/// Scans `args` (without `argv[0]`) as glibc `getopt` would, returning the options in order
/// (stopping after the first error) and the operands.
pub fn getopt(args: &[OsString], posixly_correct: bool) -> (Vec<Item>, Vec<OsString>) {
    let mut items = Vec::new();
    let mut operands = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let arg = args[i].as_bytes();
        if arg == b"--" {
            operands.extend(args[i + 1..].iter().cloned());
            break;
        }
        if arg.len() < 2 || arg[0] != b'-' {
            if posixly_correct {
                operands.extend(args[i..].iter().cloned());
                break;
            }
            operands.push(args[i].clone());
            i += 1;
            continue;
        }
        let mut j = 1;
        while j < arg.len() {
            let c = arg[j];
            j += 1;
            let spec = OPTSTRING.iter().position(|&o| o == c);
            let Some(pos) = spec.filter(|_| c != b':' && c != b';') else {
                items.push(Item::Invalid(c));
                return (items, operands);
            };
            if OPTSTRING.get(pos + 1) == Some(&b':') {
                let value = if j < arg.len() {
                    OsStr::from_bytes(&arg[j..]).to_os_string()
                } else if i + 1 < args.len() {
                    i += 1;
                    args[i].clone()
                } else {
                    items.push(Item::MissingArg(c));
                    return (items, operands);
                };
                items.push(Item::Opt(c, Some(value)));
                break;
            }
            items.push(Item::Opt(c, None));
        }
        i += 1;
    }
    (items, operands)
}

/// The parsed flags.
#[derive(Debug, Default)]
struct Flags {
    touch: bool,
    evict: bool,
    quiet: bool,
    verbose: u32,
    lock: bool,
    lockall: bool,
    daemon: bool,
    follow: bool,
    single_fs: bool,
    count_hardlinks: bool,
    wait: bool,
    nul: bool,
    max_size: Option<u64>,
    range: Range,
    ignore: Vec<Pattern>,
    include: Vec<Pattern>,
    batch: Option<OsString>,
    pidfile: Option<OsString>,
    output: Option<OsString>,
}

/// Prints `vmtouch: FATAL: msg` and exits 1, flushing stdout first (C's `exit` does). When
/// this is a `-d -w` daemon child, tells the waiting parent.
fn fatal(msg: &[u8], stdout: Option<&mut dyn Write>, notify: Option<&Notify>) -> ! {
    fatal_with_hints(msg, &[], stdout, notify)
}

/// [`fatal`], with extra lines after the FATAL line, each indented by two spaces (blobpin's
/// only addition to vmtouch's output: the memlock doctor under a failed lock).
fn fatal_with_hints(
    msg: &[u8],
    hints: &[String],
    stdout: Option<&mut dyn Write>,
    notify: Option<&Notify>,
) -> ! {
    let mut line = b"vmtouch: FATAL: ".to_vec();
    line.extend_from_slice(msg);
    line.push(b'\n');
    for h in hints {
        line.extend_from_slice(b"  ");
        line.extend_from_slice(h.as_bytes());
        line.push(b'\n');
    }
    let _ = io::stderr().write_all(&line);
    if let Some(n) = notify {
        n.send(1);
    }
    if let Some(o) = stdout {
        let _ = o.flush();
    }
    std::process::exit(exit::FATAL)
}

fn usage_exit(stdout: &mut dyn Write) -> ! {
    let _ = stdout.write_all(out::USAGE.as_bytes());
    let _ = stdout.flush();
    std::process::exit(exit::FATAL)
}

/// Runs vmtouch mode with the whole argv; returns only on paths that exit normally.
pub fn main(argv: Vec<OsString>) -> i32 {
    let prog = argv.first().cloned().unwrap_or_else(|| "vmtouch".into());
    let posixly = std::env::var_os("POSIXLY_CORRECT").is_some();
    let (items, operands) = getopt(&argv[1.min(argv.len())..], posixly);
    let page = sys::page_size();
    let mut f = Flags::default();
    let mut early_out = io::stdout();

    for item in items {
        let (c, arg) = match item {
            Item::Opt(c, arg) => (c, arg),
            Item::Invalid(c) | Item::MissingArg(c) => {
                let what: &[u8] = if matches!(item, Item::Invalid(_)) {
                    b"invalid option"
                } else {
                    b"option requires an argument"
                };
                let mut line = prog.as_bytes().to_vec();
                line.extend_from_slice(b": ");
                line.extend_from_slice(what);
                line.extend_from_slice(b" -- '");
                line.push(c);
                line.extend_from_slice(b"'\n");
                let _ = io::stderr().write_all(&line);
                usage_exit(&mut early_out);
            }
        };
        let text = || {
            arg.as_ref()
                .map(|a| a.to_string_lossy().into_owned())
                .unwrap_or_default()
        };
        match c {
            b't' => f.touch = true,
            b'e' => f.evict = true,
            b'q' => f.quiet = true,
            b'v' => f.verbose += 1,
            b'l' => {
                f.lock = true;
                f.touch = true;
            }
            b'L' => {
                f.lockall = true;
                f.touch = true;
            }
            b'd' => f.daemon = true,
            b'f' => f.follow = true,
            b'F' => f.single_fs = true,
            b'h' => f.count_hardlinks = true,
            b'w' => f.wait = true,
            b'0' => f.nul = true,
            b'p' => match f.range.apply(&text(), page) {
                Ok(r) => f.range = r,
                Err(e) => fatal(e.to_string().as_bytes(), None, None),
            },
            b'm' => match crate::residency::range::parse_size(&text()) {
                Ok(v) => f.max_size = Some(v),
                Err(e) => fatal(e.to_string().as_bytes(), None, None),
            },
            b'i' | b'I' => {
                let pat = arg.expect("getopt gives an argument");
                let list = if c == b'i' {
                    &mut f.ignore
                } else {
                    &mut f.include
                };
                if pat.len() > MAX_PATTERN_LEN {
                    let mut m =
                        format!("too long pattern provided to -{}: ", c as char).into_bytes();
                    m.extend_from_slice(pat.as_bytes());
                    fatal(&m, None, None);
                }
                if list.len() >= MAX_PATTERNS {
                    let m = format!(
                        "too many patterns passed to -{}. Max is {MAX_PATTERNS}",
                        c as char
                    );
                    fatal(m.as_bytes(), None, None);
                }
                list.extend(Pattern::fnmatch(pat.as_bytes()));
            }
            b'b' => f.batch = arg,
            b'P' => f.pidfile = arg,
            b'o' => f.output = arg,
            _ => unreachable!("getopt only yields optstring letters"),
        }
    }

    // Validation, in vmtouch's order.
    if f.touch && f.evict {
        fatal(b"invalid option combination: -t and -e", None, None);
    }
    if f.lock && f.lockall {
        fatal(b"invalid option combination: -l and -L", None, None);
    }
    if f.daemon {
        if !(f.lock || f.lockall) {
            fatal(b"daemon mode must be combined with -l or -L", None, None);
        }
        if !f.wait {
            f.quiet = true;
            f.verbose = 0;
        }
    }
    if f.wait && !f.daemon {
        fatal(b"wait mode must be combined with -d", None, None);
    }
    if f.quiet && f.verbose > 0 {
        fatal(b"invalid option combination: -q and -v", None, None);
    }
    if f.pidfile.is_some() && !(f.lock || f.lockall) {
        fatal(
            b"pidfile can only be created when -l or -L is specified",
            None,
            None,
        );
    }
    if operands.is_empty() && f.batch.is_none() {
        let mut line = prog.as_bytes().to_vec();
        line.extend_from_slice(b": no files or directories specified\n");
        let _ = early_out.write_all(&line);
        usage_exit(&mut early_out);
    }

    let notify = if f.daemon {
        Some(daemonize(f.wait))
    } else {
        None
    };
    let notify = notify.flatten();
    run_crawl(f, operands, notify)
}

/// The `-d -w` channel from the daemon child to the waiting parent.
struct Notify {
    fd: std::os::fd::OwnedFd,
}

impl Notify {
    fn send(&self, code: u8) {
        let mut f = File::from(self.fd.try_clone().expect("dup pipe"));
        if let Err(e) = f.write_all(&[code]) {
            let _ = write!(io::stderr(), "vmtouch: FATAL: write: {}", sys::strerror(&e));
        }
    }
}

/// `-d`: forks; the parent exits (at once, or with `-w` with the child's status once it has
/// locked); the child starts a session and, without `-w`, points stdin and stdout at
/// /dev/null. stderr stays open so a failure is still reported (vmtouch does the same).
fn daemonize(wait: bool) -> Option<Notify> {
    let (rd, wr) = match nix::unistd::pipe() {
        Ok(p) => p,
        Err(e) => fatal(
            format!("pipe: {}", sys::strerror(&e.into())).as_bytes(),
            None,
            None,
        ),
    };
    match sys::fork_single_threaded() {
        Err(e) => fatal(
            format!("fork: {}", sys::strerror(&e)).as_bytes(),
            None,
            None,
        ),
        Ok(sys::Forked::Parent(_)) => {
            drop(wr);
            if !wait {
                std::process::exit(exit::OK);
            }
            let mut buf = [0u8; 1];
            let mut f = File::from(rd);
            match f.read(&mut buf) {
                Ok(1) => std::process::exit(buf[0] as i32),
                Ok(_) => fatal(b"daemon shut down unexpectedly", None, None),
                Err(e) => fatal(
                    format!("read: {}", sys::strerror(&e)).as_bytes(),
                    None,
                    None,
                ),
            }
        }
        Ok(sys::Forked::Child) => {
            drop(rd);
            if let Err(e) = nix::unistd::setsid() {
                fatal(
                    format!("setsid: {}", sys::strerror(&e.into())).as_bytes(),
                    None,
                    None,
                );
            }
            if !wait {
                reopen_std();
            }
            if wait {
                Some(Notify { fd: wr })
            } else {
                None
            }
        }
    }
}

/// Points stdin and stdout at /dev/null (vmtouch's `reopen_all`).
fn reopen_std() {
    let res = (|| -> io::Result<()> {
        let null_r = File::open("/dev/null")?;
        let null_w = File::options().write(true).open("/dev/null")?;
        sys::redirect_fd(null_r.as_fd(), 0)?;
        sys::redirect_fd(null_w.as_fd(), 1)?;
        Ok(())
    })();
    if let Err(e) = res {
        fatal(
            format!("freopen: {}", sys::strerror(&e)).as_bytes(),
            None,
            None,
        );
    }
}

/// stdout as C stdio buffers it: fully buffered (4 KiB) unless it is a terminal.
fn c_stdout() -> Box<dyn Write> {
    let stdout = io::stdout();
    let is_tty = stdout.is_terminal();
    let file = match stdout.as_fd().try_clone_to_owned() {
        Ok(fd) => File::from(fd),
        Err(_) => return Box::new(stdout),
    };
    if is_tty {
        Box::new(LineWriter::new(file))
    } else {
        Box::new(BufWriter::with_capacity(4096, file))
    }
}

struct VmSink<'a> {
    out: &'a mut dyn Write,
    quiet: bool,
    verbose: bool,
}

impl Sink for VmSink<'_> {
    fn warning(&mut self, w: Warning) {
        if !self.quiet {
            let mut line = b"vmtouch: WARNING: ".to_vec();
            line.extend_from_slice(&w.to_bytes());
            line.push(b'\n');
            let _ = io::stderr().write_all(&line);
        }
    }

    fn chart(&mut self, path: &Path, map: &PageMap, phase: ChartPhase) {
        if !self.verbose {
            return;
        }
        if phase == ChartPhase::Initial {
            let _ = self.out.write_all(path.as_os_str().as_bytes());
            let _ = self.out.write_all(b"\n");
        }
        let _ = out::chart(self.out, map);
        if phase == ChartPhase::Final {
            // Drawn twice even in stat mode (Initial, then Final), as vmtouch does.
            let _ = self.out.write_all(b"\n");
        }
    }

    fn evicting(&mut self, path: &Path) {
        if self.verbose {
            let _ = self.out.write_all(b"Evicting ");
            let _ = self.out.write_all(path.as_os_str().as_bytes());
            let _ = self.out.write_all(b"\n");
        }
    }
}

fn run_crawl(f: Flags, operands: Vec<OsString>, notify: Option<Notify>) -> i32 {
    let page = sys::page_size();
    let mut stdout = c_stdout();
    let op = if f.lock {
        Op::Lock
    } else if f.lockall {
        Op::LockAll
    } else if f.touch {
        Op::Touch
    } else if f.evict {
        Op::Evict
    } else {
        Op::Stat
    };
    let verbose = f.verbose > 0;
    let opts = Options {
        op,
        follow_symlinks: f.follow,
        single_filesystem: f.single_fs,
        count_hardlinks: f.count_hardlinks,
        ignore: f.ignore,
        include: f.include,
        max_file_size: f.max_size.unwrap_or(u64::MAX),
        range: f.range,
        page_maps: verbose,
        honest: false,
    };
    let start = Instant::now();
    let mut crawler = Crawler::with_threads(opts, super::residency_cmd::threads());
    let result = {
        let mut sink = VmSink {
            out: &mut *stdout,
            quiet: f.quiet,
            verbose,
        };
        crawl_all(
            &mut crawler,
            f.batch.as_deref(),
            f.nul,
            &operands,
            &mut sink,
        )
    };
    if let Err(fatal_err) = result {
        let msg = fatal_err.to_bytes();
        let hints = print_lock_hints(&fatal_err);
        fatal_with_hints(&msg, &hints, Some(&mut *stdout), notify.as_ref());
    }
    let elapsed = start.elapsed().as_secs_f64();
    let totals = crawler.totals();

    if f.lock || f.lockall {
        let (kept, _pages) = crawler.into_kept();
        if f.lockall {
            if let Err(e) = nix::sys::mman::mlockall(nix::sys::mman::MlockAllFlags::MCL_CURRENT) {
                let err = Fatal::Mlockall(io::Error::from(e), totals.pages * page);
                let hints = print_lock_hints(&err);
                fatal_with_hints(&err.to_bytes(), &hints, Some(&mut *stdout), notify.as_ref());
            }
        }
        let pidfile = f.pidfile.map(PathBuf::from);
        let signals = pidfile.as_ref().map(|p| {
            let set = hold_signals();
            write_pidfile(p, f.quiet);
            set
        });
        if !f.quiet {
            let _ = out::locked(&mut *stdout, totals.pages, page);
        }
        // Unlike vmtouch, flush now: the LOCKED line is not lost when a blocked lock is
        // killed with stdout on a pipe (quirk Q6).
        let _ = stdout.flush();
        if f.wait {
            reopen_std();
        }
        if let Some(n) = &notify {
            n.send(0);
        }
        hold(kept, signals, pidfile.as_deref(), f.quiet);
    }

    if !f.quiet {
        let mode = if f.touch {
            out::Mode::Touch
        } else if f.evict {
            out::Mode::Evict
        } else {
            out::Mode::Stat
        };
        match &f.output {
            None => {
                let _ = out::summary(&mut *stdout, mode, &totals, elapsed, verbose, page);
            }
            Some(o) if o.as_bytes().starts_with(b"kv") => {
                let _ = out::kv(&mut *stdout, mode, &totals, elapsed, page);
            }
            Some(_) => {}
        }
    }
    let _ = stdout.flush();
    exit::OK
}

/// Crawls the batch list (first) and then the operands.
fn crawl_all(
    crawler: &mut Crawler,
    batch: Option<&OsStr>,
    nul: bool,
    operands: &[OsString],
    sink: &mut dyn Sink,
) -> Result<(), Fatal> {
    if let Some(list) = batch {
        let reader: Option<Box<dyn Read>> = if list.as_bytes() == b"-" {
            Some(Box::new(io::stdin()))
        } else {
            match File::open(list) {
                Ok(f) => Some(Box::new(f)),
                Err(e) => {
                    sink.warning(Warning::Open(PathBuf::from(list), e));
                    None
                }
            }
        };
        if let Some(reader) = reader {
            let delim = if nul { 0 } else { b'\n' };
            let mut reader = BufReader::new(reader);
            let mut record = Vec::new();
            loop {
                record.clear();
                match reader.read_until(delim, &mut record) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                // vmtouch strips the last byte of every record even when it is not the
                // delimiter (quirk Q2); blobpin strips only the delimiter.
                if record.last() == Some(&delim) {
                    record.pop();
                }
                crawler.crawl(&PathBuf::from(OsString::from_vec(record.clone())), sink)?;
            }
        }
    }
    for p in operands {
        crawler.crawl(Path::new(p), sink)?;
    }
    crawler.finish(sink)
}

/// Blocks SIGINT, SIGTERM and SIGQUIT so that `hold` can wait for them and remove the
/// pidfile (vmtouch installs handlers for the same three).
fn hold_signals() -> nix::sys::signal::SigSet {
    use nix::sys::signal::{SigSet, Signal};
    let mut set = SigSet::empty();
    set.add(Signal::SIGINT);
    set.add(Signal::SIGTERM);
    set.add(Signal::SIGQUIT);
    if let Err(e) = set.thread_block() {
        let w = format!(
            "vmtouch: WARNING: unable to register signals for pidfile ({}), skipping\n",
            sys::strerror(&e.into())
        );
        let _ = io::stderr().write_all(w.as_bytes());
    }
    set
}

fn write_pidfile(path: &Path, quiet: bool) {
    let warn = |msg: String| {
        if !quiet {
            let _ = io::stderr().write_all(format!("vmtouch: WARNING: {msg}\n").as_bytes());
        }
    };
    let shown = path.display();
    match File::create(path) {
        Err(e) => warn(format!(
            "unable to open pidfile {shown} ({}), skipping",
            sys::strerror(&e)
        )),
        Ok(mut file) => {
            if let Err(e) = writeln!(file, "{}", std::process::id()) {
                warn(format!(
                    "unable to write to pidfile {shown} ({}), deleting it",
                    sys::strerror(&e)
                ));
                remove_pidfile(path, quiet);
            }
        }
    }
}

fn remove_pidfile(path: &Path, quiet: bool) {
    if let Err(e) = std::fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound && !quiet {
            let msg = format!(
                "vmtouch: WARNING: unable to remove pidfile {} ({})\n",
                path.display(),
                sys::strerror(&e)
            );
            let _ = io::stderr().write_all(msg.as_bytes());
        }
    }
}

/// Holds the locks forever. With a pidfile, SIGINT/SIGTERM/SIGQUIT remove it and exit 0;
/// without, signals keep their default action, as in vmtouch.
fn hold(
    kept: Vec<sys::Mapping>,
    signals: Option<nix::sys::signal::SigSet>,
    pidfile: Option<&Path>,
    quiet: bool,
) -> ! {
    for m in kept {
        m.keep_forever();
    }
    match (signals, pidfile) {
        (Some(set), Some(p)) => loop {
            if set.wait().is_ok() {
                remove_pidfile(p, quiet);
                std::process::exit(exit::OK);
            }
        },
        _ => loop {
            nix::unistd::pause();
        },
    }
}

/// After a lock failure, vmtouch's FATAL line is printed unchanged; blobpin adds indented
/// hint lines on stderr after it (the memlock doctor's short form). Returns those lines
/// (without the indentation, which `fatal_with_hints` adds); stdout and the exit status are
/// untouched.
fn print_lock_hints(err: &Fatal) -> Vec<String> {
    match err {
        Fatal::Mlock(..) | Fatal::Mlockall(..) => super::residency_cmd::lock_hints(err),
        _ => Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn permutes_clusters_and_stops_at_dashdash() {
        let (items, ops) = getopt(&os(&["f1", "-vt", "-m64M", "-p", "1-2", "--", "-q"]), false);
        assert_eq!(
            items,
            vec![
                Item::Opt(b'v', None),
                Item::Opt(b't', None),
                Item::Opt(b'm', Some("64M".into())),
                Item::Opt(b'p', Some("1-2".into())),
            ]
        );
        assert_eq!(ops, os(&["f1", "-q"]));
    }

    #[test]
    fn posixly_correct_stops_at_first_operand() {
        let (items, ops) = getopt(&os(&["f1", "-q"]), true);
        assert!(items.is_empty());
        assert_eq!(ops, os(&["f1", "-q"]));
    }

    #[test]
    fn errors() {
        let (items, _) = getopt(&os(&["--help"]), false);
        assert_eq!(items, vec![Item::Invalid(b'-')]);
        let (items, _) = getopt(&os(&["-v", "-m"]), false);
        assert_eq!(items, vec![Item::Opt(b'v', None), Item::MissingArg(b'm')]);
        let (items, _) = getopt(&os(&["-:"]), false);
        assert_eq!(items, vec![Item::Invalid(b':')]);
        let (_, ops) = getopt(&os(&["-", "x"]), false);
        assert_eq!(ops, os(&["-", "x"]));
    }
}
