# Print an optspec for argparse to handle cmd's options that are independent of any subcommand.
function __fish_blobpin_global_optspecs
    string join \n V/version help
end

function __fish_blobpin_needs_command
    # Figure out if the current invocation already has a command.
    set -l cmd (commandline -opc)
    set -e cmd[1]
    argparse -s (__fish_blobpin_global_optspecs) -- $cmd 2>/dev/null
    or return
    if set -q argv[1]
        # Also print the command, so this can be used to figure out what it is.
        echo $argv[1]
        return 1
    end
    return 0
end

function __fish_blobpin_using_subcommand
    set -l cmd (__fish_blobpin_needs_command)
    test -z "$cmd"
    and return 1
    contains -- $cmd[1] $argv
end

complete -c blobpin -n "__fish_blobpin_needs_command" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_needs_command" -l help -d 'Print help'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "stat" -d 'Show how much of each file is in the page cache'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "touch" -d 'Read files into the page cache (only the pages that are missing)'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "evict" -d 'Drop files from the page cache'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "lock" -d 'Read files into the page cache and lock them there until SIGTERM or SIGINT'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "tracker" -d 'Run the rack- and datacentre-aware HTTP BitTorrent tracker (announce, scrape, metrics)'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "doctor" -d 'Tell whether locking will work here, and if not, why and what exactly to change'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "publish" -d 'Publish a blob: write its private .torrent and replace the feed\'s latest.json atomically'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "sync" -d 'Fetch the feed\'s latest version into DIR, verify it, switch DIR/current to it atomically'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "origin" -d 'Serve a feed: HTTP feed, the tracker and a seeder of every published version in one process'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "demo" -d 'Run a whole swarm on loopback: an origin, 4 hosts in two racks, a generated blob, locked'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "seed" -d 'Seed the latest version of a feed entry from the published data until SIGTERM (a precursor of `origin`, used by the tests)'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "generate" -d 'Write the man pages and shell completions (for packaging and the checked-in copies)'
complete -c blobpin -n "__fish_blobpin_needs_command" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s p -l range -d 'Operate on this byte range of every file: N, A-B, A- or -B (sizes as 4k, 1.5G)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -l include -d 'Only files whose name matches (a glob; matched against the whole path if it has a /)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -l exclude -d 'Skip files and directories whose name matches (a glob, as --include)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s m -l max-file-size -d 'Skip files larger than SIZE (e.g. 500M)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -l json -d 'Print one JSON report (schema blobpin.residency/1) instead of text'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -l bytes -d 'Print sizes as exact byte counts'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s v -l verbose -d 'Print a line for every file'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s q -l quiet -d 'Print nothing but errors'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s L -l follow -d 'Follow symbolic links'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s x -l one-file-system -d 'Do not cross into other filesystems than the first path\'s'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -l count-hardlinks -d 'Process every hard link of a file (by default each file once)'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s h -l help -d 'Print help'
complete -c blobpin -n "__fish_blobpin_using_subcommand stat" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s p -l range -d 'Operate on this byte range of every file: N, A-B, A- or -B (sizes as 4k, 1.5G)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -l include -d 'Only files whose name matches (a glob; matched against the whole path if it has a /)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -l exclude -d 'Skip files and directories whose name matches (a glob, as --include)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s m -l max-file-size -d 'Skip files larger than SIZE (e.g. 500M)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -l json -d 'Print one JSON report (schema blobpin.residency/1) instead of text'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -l bytes -d 'Print sizes as exact byte counts'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s v -l verbose -d 'Print a line for every file'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s q -l quiet -d 'Print nothing but errors'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s L -l follow -d 'Follow symbolic links'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s x -l one-file-system -d 'Do not cross into other filesystems than the first path\'s'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -l count-hardlinks -d 'Process every hard link of a file (by default each file once)'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s h -l help -d 'Print help'
complete -c blobpin -n "__fish_blobpin_using_subcommand touch" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s p -l range -d 'Operate on this byte range of every file: N, A-B, A- or -B (sizes as 4k, 1.5G)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -l include -d 'Only files whose name matches (a glob; matched against the whole path if it has a /)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -l exclude -d 'Skip files and directories whose name matches (a glob, as --include)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s m -l max-file-size -d 'Skip files larger than SIZE (e.g. 500M)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -l json -d 'Print one JSON report (schema blobpin.residency/1) instead of text'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -l bytes -d 'Print sizes as exact byte counts'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s v -l verbose -d 'Print a line for every file'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s q -l quiet -d 'Print nothing but errors'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s L -l follow -d 'Follow symbolic links'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s x -l one-file-system -d 'Do not cross into other filesystems than the first path\'s'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -l count-hardlinks -d 'Process every hard link of a file (by default each file once)'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s h -l help -d 'Print help'
complete -c blobpin -n "__fish_blobpin_using_subcommand evict" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s p -l range -d 'Operate on this byte range of every file: N, A-B, A- or -B (sizes as 4k, 1.5G)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l include -d 'Only files whose name matches (a glob; matched against the whole path if it has a /)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l exclude -d 'Skip files and directories whose name matches (a glob, as --include)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s m -l max-file-size -d 'Skip files larger than SIZE (e.g. 500M)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l pidfile -d 'Write the process id to FILE once everything is locked; removed on exit' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l max-lock -d 'Refuse to lock more than SIZE in total (e.g. 20G); checked before locking anything' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l json -d 'Print one JSON report (schema blobpin.residency/1) instead of text'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l bytes -d 'Print sizes as exact byte counts'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s v -l verbose -d 'Print a line for every file'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s q -l quiet -d 'Print nothing but errors'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s L -l follow -d 'Follow symbolic links'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s x -l one-file-system -d 'Do not cross into other filesystems than the first path\'s'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l count-hardlinks -d 'Process every hard link of a file (by default each file once)'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l daemon -d 'Detach into the background; the command returns once everything is locked (exit 0) or locking failed (exit 1)'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -l no-preflight -d 'Skip the preflight checks and call mlock right away'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand lock" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l listen -d 'Address to listen on (repeat for several; port 0 picks a free port, printed at start)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l topology -d 'Topology file: TOML with `[[dc]]` tables, each with `[[dc.rack]]` tables (name, cidrs), and an optional `[overlay]` table' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l key -d 'Shared secret: every announce must carry key=SECRET' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l allow -d 'Only track the info-hashes listed in FILE (40 hex digits a line); re-read on SIGHUP' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l interval -d 'Announce interval sent to clients, in seconds; peers silent for two intervals expire' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l min-interval -d 'Minimum announce interval sent to clients, in seconds' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l numwant -d 'Peers returned when an announce has no numwant' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l max-numwant -d 'Most peers returned by one announce, whatever numwant asks' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l max-swarms -d 'Most swarms (info-hashes) held in memory' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l max-peers -d 'Most peers held per swarm' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l max-connections -d 'Most client connections open at once' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l origin -d 'The origin\'s address, IP or IP:PORT (repeatable). Without --origin and --origin-peer-id, a peer whose first announce has left=0 counts as an origin' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l origin-peer-id -d 'Peers whose peer id starts with PREFIX are origins' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -l threads -d 'Worker threads (0: one per CPU)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand tracker" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l size -d 'Bytes to lock (sizes as 64M, 1.5G), instead of measuring PATHs' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l user -d 'Evaluate limits.conf for this user (name or uid) as a new login session would get them' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l unit -d 'Check the systemd service that will run blobpin (LimitMEMLOCK=, AmbientCapabilities=)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l sysroot -d 'Read /etc, /proc and /sys from DIR instead of the running system (an image, a fixture)' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l max-lock -d 'The --max-lock that `blobpin lock` will be given' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l json -d 'Print every finding as JSON (schema blobpin.doctor/1): id, severity, evidence, fix'
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -l strict -d 'Exit 1 on warning-level risks too'
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand doctor" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -l feed -d 'The feed directory (served by `origin`)' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -l name -d 'Feed name [default: the file name without extension, or the directory name]' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -l version-name -d 'Version name [default: UTC time and the first 8 hex digits of the info-hash]' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -l tracker -d 'Tracker announce URL to write into the torrent (repeatable; private torrents use the first)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -l piece-size -d 'Piece size (a power of two >= 16k, e.g. 1M) [default: chosen from the blob size]' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -l json -d 'Print the feed entry as JSON'
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand publish" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l dest -d 'The destination directory (holds current, versions/, .staging/, .locks/)' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l keep -d 'Complete versions to keep, the live one included' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l exec -d 'Shell command to run after the switch, with BLOBPIN_VERSION and BLOBPIN_PATH set' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l listen -d 'Address to accept peers on (port 0: any free port)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l peer -d 'A peer to fetch from (repeatable), besides those the torrent\'s tracker names' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l tracker -d 'Tracker announce URL to use besides the torrent\'s (repeatable)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l key -d 'The tracker\'s shared secret (`origin --key`, `tracker --key`): every announce URL, the torrent\'s own and --tracker, gets key=SECRET. Without it a keyed tracker refuses the announces ("missing key") and the sync finds only --peer peers' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l max-upload -d 'Upload cap, bytes per second (e.g. 40M or 40MB/s)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l max-download -d 'Download cap, bytes per second (e.g. 40M or 40MB/s)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l stall-timeout -d 'Give up when no data arrived for this many seconds (0: never)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l reconnect-after -d 'Reconnect to every peer after this many seconds without progress (0: never); works around librqbit 9.1 hosts that wait forever for pieces a peer never announced to them' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l wake-ms -d 'Milliseconds between rounds of the waker, which keeps librqbit\'s requesters from idling up to 5 s after catching up with a parent (src/fetch/waker.rs); 0 turns it off' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l seed-for -d 'Keep seeding this many seconds after the switch (SIGTERM or SIGINT ends it early, with exit status 0)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l prime-from -d 'Before joining, fetch one piece of the new version from this source (an http:// base URL serving the blob\'s files with Range support, or a local directory holding them), so this host can trade with peers that are still downloading (librqbit 9.1 ignores a peer that joins holding nothing) [default with an http(s) FEED_URL: FEED_URL/files, where the origin serves them; a failure there is only reported with -v]' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l watch -d 'Run as a service: poll the feed every INTERVAL (e.g. 30s, 5m) and sync each new version; hold the locks in this process (detached holders of earlier one-shot syncs are taken over: the live version is locked here first, then they are stopped), keep seeding the live version, and hold DIR/.sync.lock so one-shot syncs of DIR refuse to run. READY=1 goes to $NOTIFY_SOCKET once the first version is live (and locked); SIGTERM/SIGINT stop cleanly (exit 0; the locks go with the process); SIGHUP polls now. A failed poll is logged and retried at the next one; the live version stays locked' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l metrics -d 'With --watch, serve Prometheus metrics on ADDR (GET /metrics): bytes downloaded by peer tier (rack, dc, remote, unknown, origin: placed with the topology the origin serves at FEED/../topology, the origin being the feed\'s host) and by peer address, uploaded, pieces, the live version, lock state, polls and the last poll\'s result' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l lock -d 'Lock the new version in RAM before switching; the lock is held by a detached process until a later sync replaces it'
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l no-prime -d 'Join without a primer piece (no default --prime-from)'
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -s v -l verbose -d 'Log each step on stderr (joined the swarm, live)'
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -l json -d 'Print the report as JSON (schema blobpin.sync/1; with --watch, one line per change)'
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand sync" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l feed -d 'The feed directory (as written by `blobpin publish --feed DIR`)' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l listen -d 'Address to serve the feed on (HTTP)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l tracker-listen -d 'Address of the tracker, repeatable [default: the --listen IP, port + 1; any free port if 0]' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l seed-listen -d 'Address the seeder accepts peers on [default: the --listen IP, port + 2; any free port if 0]' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l topology -d 'Topology file for the tracker (as `blobpin tracker --topology`)' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l key -d 'Shared secret: every announce must carry key=SECRET (a wrong or missing key gets the failure reason "invalid key" or "missing key"); give syncs `--key SECRET` too. The origin\'s own seeder announces with it' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l max-upload -d 'Upload cap of the seeder, bytes per second (e.g. 40M or 40MB/s)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l max-download -d 'Download cap of the origin\'s BitTorrent session, bytes per second (e.g. 40M or 40MB/s). The origin only seeds (a version whose data fails its check is never downloaded into), so this is a bound for safety' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l metrics -d 'Also serve /metrics (Prometheus text) on this address: versions, bytes uploaded per version and by the data centre of the receiving peer, primer bytes, HTTP requests, and the tracker\'s figures (also served on --listen)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l interval -d 'Announce interval the tracker sends to clients, in seconds (a host that lost its parent is given a new one at its next announce)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l scan-ms -d 'Milliseconds between scans of the feed directory' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -l loopback-racks -d 'Emulation on one machine: locate a loopback client by the tracker address it connected to (give each emulated host the tracker URL on its own 127.x.y.z address)'
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand origin" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -l size -d 'Size of the generated blob (e.g. 256M)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -l shape -d 'Who feeds whom (for measurements): tracker (the origin\'s tracker shapes the overlay), peers (each host given its overlay parent and the origin by --peer), chain (the parent only), star (every host gets only the origin, no primer piece), tracker-unprimed' -r -f -a "tracker\t''
tracker-unprimed\t''
peers\t''
chain\t''
star\t''"
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -l piece-size -d 'Piece size of the published blob (4 MiB: fewer HAVE messages than the 256 KiB publish would choose, which librqbit 9.1 can drop when a connection lags)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -l seed-for -d 'Seconds each host keeps seeding after it has the blob, before it locks and exits' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -l no-lock -d 'Do not lock the hosts\' copies (for machines where locking cannot work)'
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -l keep -d 'Keep the temporary directory (its path is printed)'
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -s h -l help -d 'Print help (see more with \'--help\')'
complete -c blobpin -n "__fish_blobpin_using_subcommand demo" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -l feed -d 'The feed entry: http://HOST:PORT/feed/NAME or a local FEED/NAME directory' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -l data -d 'The published file or directory' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -l listen -d 'Address to accept peers on' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -l peer -d 'Peers to connect to (repeatable)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -l max-upload -d 'Upload cap, bytes per second (e.g. 4M)' -r
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -l corrupt-uploads -d 'Test hook: play a bad peer that corrupts every block it uploads'
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -s h -l help -d 'Print help'
complete -c blobpin -n "__fish_blobpin_using_subcommand seed" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand generate" -l out -d 'Directory to write `man/` and `completions/` into' -r -F
complete -c blobpin -n "__fish_blobpin_using_subcommand generate" -s h -l help -d 'Print help'
complete -c blobpin -n "__fish_blobpin_using_subcommand generate" -s V -l version -d 'Print version'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "stat" -d 'Show how much of each file is in the page cache'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "touch" -d 'Read files into the page cache (only the pages that are missing)'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "evict" -d 'Drop files from the page cache'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "lock" -d 'Read files into the page cache and lock them there until SIGTERM or SIGINT'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "tracker" -d 'Run the rack- and datacentre-aware HTTP BitTorrent tracker (announce, scrape, metrics)'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "doctor" -d 'Tell whether locking will work here, and if not, why and what exactly to change'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "publish" -d 'Publish a blob: write its private .torrent and replace the feed\'s latest.json atomically'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "sync" -d 'Fetch the feed\'s latest version into DIR, verify it, switch DIR/current to it atomically'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "origin" -d 'Serve a feed: HTTP feed, the tracker and a seeder of every published version in one process'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "demo" -d 'Run a whole swarm on loopback: an origin, 4 hosts in two racks, a generated blob, locked'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "seed" -d 'Seed the latest version of a feed entry from the published data until SIGTERM (a precursor of `origin`, used by the tests)'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "generate" -d 'Write the man pages and shell completions (for packaging and the checked-in copies)'
complete -c blobpin -n "__fish_blobpin_using_subcommand help; and not __fish_seen_subcommand_from stat touch evict lock tracker doctor publish sync origin demo seed generate help" -f -a "help" -d 'Print this message or the help of the given subcommand(s)'
