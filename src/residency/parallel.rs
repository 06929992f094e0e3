//! Files processed by a pool of threads while the crawl goes on, with every report still
//! delivered in crawl order.
//!
//! The crawl stays on the calling thread (its order, counters and warnings are vmtouch's).
//! Each file it reaches becomes a job for one of the worker threads, each with its own
//! [`FileWorker`]; what a worker would have told the sink is recorded and replayed on the
//! calling thread once every entry before it has been delivered. Results therefore come out
//! exactly as the sequential engine gives them, while the opens, `cachestat`s, fadvises and
//! page reads of several files overlap: both cores for warm trees, and several reads in
//! flight for cold ones.
//!
//! Per-page charts (vmtouch `-v`) need no parallelism and are not offered here.

use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread;

use super::file::{Done, FileWorker};
use super::{ChartPhase, Fatal, FileReport, Options, PageMap, Sink, Warning};
use crate::sys::Mapping;

/// What a worker's file produced, to be replayed in order.
enum Event {
    Warning(Warning),
    Evicting(PathBuf),
    File(Box<FileReport>),
    Progress(u64),
}

/// A sink that records instead of printing.
#[derive(Default)]
struct Recorder {
    events: Vec<Event>,
}

impl Sink for Recorder {
    fn warning(&mut self, w: Warning) {
        self.events.push(Event::Warning(w));
    }
    fn chart(&mut self, _path: &Path, _map: &PageMap, _phase: ChartPhase) {}
    fn evicting(&mut self, path: &Path) {
        self.events.push(Event::Evicting(path.to_path_buf()));
    }
    fn file(&mut self, report: &FileReport) {
        self.events.push(Event::File(Box::new(report.clone())));
    }
    fn progress(&mut self, bytes: u64) {
        self.events.push(Event::Progress(bytes));
    }
}

fn replay(events: Vec<Event>, sink: &mut dyn Sink) {
    for e in events {
        match e {
            Event::Warning(w) => sink.warning(w),
            Event::Evicting(p) => sink.evicting(&p),
            Event::File(r) => sink.file(&r),
            Event::Progress(b) => sink.progress(b),
        }
    }
}

/// One finished job.
struct Outcome {
    seq: u64,
    result: Result<Done, Fatal>,
    events: Vec<Event>,
    kept: Vec<Mapping>,
    kept_pages: u64,
}

/// An entry of the ordered stream: a crawl-level warning, or a file handed to a worker.
enum Entry {
    Warning(Warning),
    File(u64),
}

/// The worker pool and the ordered stream of what is still to be delivered.
pub struct Pool {
    jobs: Option<mpsc::SyncSender<(u64, PathBuf)>>,
    results: mpsc::Receiver<Outcome>,
    handles: Vec<thread::JoinHandle<()>>,
    stream: VecDeque<Entry>,
    ready: BTreeMap<u64, Outcome>,
    next_seq: u64,
    kept: Vec<Mapping>,
    kept_pages: u64,
    done: Done,
}

impl Pool {
    /// Starts `threads` workers configured by `opts`.
    pub fn new(opts: &Options, threads: usize) -> Pool {
        let threads = threads.max(1);
        // A short queue keeps the crawl close to the workers (and memory bounded).
        let (job_tx, job_rx) = mpsc::sync_channel::<(u64, PathBuf)>(threads * 64);
        let job_rx = std::sync::Arc::new(std::sync::Mutex::new(job_rx));
        let (res_tx, res_rx) = mpsc::channel();
        let handles = (0..threads)
            .map(|_| {
                let rx = job_rx.clone();
                let tx = res_tx.clone();
                let mut worker = FileWorker::new(opts);
                thread::spawn(move || loop {
                    let job = rx.lock().map(|r| r.recv());
                    let Ok(Ok((seq, path))) = job else { break };
                    let mut rec = Recorder::default();
                    let result = worker.process(&path, &mut rec);
                    let (kept, kept_pages) = worker.take_kept();
                    if tx
                        .send(Outcome {
                            seq,
                            result,
                            events: rec.events,
                            kept,
                            kept_pages,
                        })
                        .is_err()
                    {
                        break;
                    }
                })
            })
            .collect();
        Pool {
            jobs: Some(job_tx),
            results: res_rx,
            handles,
            stream: VecDeque::new(),
            ready: BTreeMap::new(),
            next_seq: 0,
            kept: Vec::new(),
            kept_pages: 0,
            done: Done::default(),
        }
    }

    /// Queues a crawl-level warning behind everything queued before it.
    pub fn warning(&mut self, w: Warning, sink: &mut dyn Sink) {
        if self.stream.is_empty() {
            sink.warning(w);
        } else {
            self.stream.push_back(Entry::Warning(w));
        }
    }

    /// Hands a file to the workers; delivers whatever has become deliverable.
    pub fn file(&mut self, path: &Path, sink: &mut dyn Sink) -> Result<(), Fatal> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.stream.push_back(Entry::File(seq));
        let mut job = (seq, path.to_path_buf());
        loop {
            let tx = self.jobs.as_ref().expect("pool open");
            match tx.try_send(job) {
                Ok(()) => break,
                Err(mpsc::TrySendError::Full(j)) => {
                    job = j;
                    // The queue is full: wait for one result, deliver, and try again.
                    self.receive(true);
                    self.deliver(sink)?;
                }
                Err(mpsc::TrySendError::Disconnected(_)) => break,
            }
        }
        self.receive(false);
        self.deliver(sink)
    }

    /// Waits for every queued file and delivers everything. Returns what the files added.
    pub fn finish(&mut self, sink: &mut dyn Sink) -> Result<Done, Fatal> {
        self.jobs = None;
        while !self.stream.is_empty() {
            self.deliver(sink)?;
            if self.stream.is_empty() {
                break;
            }
            if !self.receive(true) {
                break;
            }
        }
        for h in self.handles.drain(..) {
            let _ = h.join();
        }
        Ok(self.done)
    }

    /// The mappings kept by the workers (lock modes) and their pages.
    pub fn take_kept(&mut self) -> (Vec<Mapping>, u64) {
        (
            std::mem::take(&mut self.kept),
            std::mem::take(&mut self.kept_pages),
        )
    }

    /// Moves finished outcomes into `ready`; with `block`, waits for at least one. Returns
    /// false when no more results can come.
    fn receive(&mut self, block: bool) -> bool {
        if block {
            match self.results.recv() {
                Ok(o) => {
                    self.ready.insert(o.seq, o);
                }
                Err(_) => return false,
            }
        }
        while let Ok(o) = self.results.try_recv() {
            self.ready.insert(o.seq, o);
        }
        true
    }

    /// Delivers the stream's front entries that are ready, in order.
    fn deliver(&mut self, sink: &mut dyn Sink) -> Result<(), Fatal> {
        while let Some(front) = self.stream.front() {
            match front {
                Entry::Warning(_) => {
                    if let Some(Entry::Warning(w)) = self.stream.pop_front() {
                        sink.warning(w);
                    }
                }
                Entry::File(seq) => {
                    let Some(o) = self.ready.remove(seq) else {
                        return Ok(());
                    };
                    self.stream.pop_front();
                    replay(o.events, sink);
                    self.kept.extend(o.kept);
                    self.kept_pages += o.kept_pages;
                    match o.result {
                        Ok(d) => {
                            self.done.pages += d.pages;
                            self.done.resident += d.resident;
                            self.done.unmeasured += d.unmeasured;
                        }
                        Err(f) => {
                            self.stream.clear();
                            return Err(f);
                        }
                    }
                }
            }
        }
        Ok(())
    }
}
