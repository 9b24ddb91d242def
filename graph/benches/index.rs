//! Sharing index on a large generated graph: full build time and resident
//! memory, and the cost of one share added or removed.
//!
//! cargo bench -p hpfriends-graph --bench index [-- small]

use std::time::{Duration, Instant};

use hpfriends_graph::synthetic::{channel_name, graph, user_name, Rng, Shape};
use hpfriends_graph::{Command, ShareKind, SharingIndex, Target};

fn rss_mib() -> f64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: f64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0.0);
    pages * 4096.0 / (1024.0 * 1024.0)
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn main() {
    let small = std::env::args().any(|a| a == "small");
    let shape = if small { Shape::small() } else { Shape::large() };
    println!("shape: {shape:?}");

    let t = Instant::now();
    let mut g = graph(&shape);
    println!(
        "generated graph: {} users, {} shares, {} channels in {:.2?} (RSS {:.0} MiB)",
        g.users().count(),
        g.share_count(),
        g.channels().count(),
        t.elapsed(),
        rss_mib()
    );

    let before = rss_mib();
    let mut builds = Vec::new();
    let mut index = SharingIndex::default();
    for _ in 0..3 {
        drop(index);
        let t = Instant::now();
        index = SharingIndex::build(&g);
        builds.push(t.elapsed());
    }
    let readers: usize = g
        .channels()
        .map(|c| (0..shape.users as u32).filter_map(|u| index.readers(u, c)).map(|r| r.len()).sum::<usize>())
        .sum();
    println!(
        "full build: median {:.2?} of {:?}; index RSS {:.0} MiB; {} (publisher, channel) entries, {} reader entries",
        median(builds.clone()),
        builds,
        rss_mib() - before,
        index.entries(),
        readers
    );

    // One share added (and accepted), then removed, at random places.
    let mut rng = Rng::new(7);
    let (mut adds, mut removes) = (Vec::new(), Vec::new());
    for i in 0..200 {
        let from = user_name(rng.skewed(shape.users, 2.0));
        let to = Target::User(user_name(rng.below(shape.users)));
        let channel = channel_name(rng.skewed(shape.channels, 2.0));
        let kind = if i % 10 == 0 { ShareKind::SharesAll } else { ShareKind::Shares };
        if g.apply(&Command::AddShare {
            from: from.clone(),
            to: to.clone(),
            channel: channel.clone(),
            kind,
            with_history: false,
        })
        .is_err()
        {
            continue;
        }
        let t = Instant::now();
        let applied =
            g.apply(&Command::AcceptShare { from: from.clone(), to: to.clone(), channel: channel.clone() }).unwrap();
        index.update(&g, &applied);
        adds.push(t.elapsed());
        let t = Instant::now();
        let applied = g.apply(&Command::RemoveShare { from, to, channel }).unwrap();
        index.update(&g, &applied);
        removes.push(t.elapsed());
    }
    let max = |v: &Vec<Duration>| *v.iter().max().unwrap();
    println!(
        "one share accepted: median {:.2?}, max {:.2?}; removed: median {:.2?}, max {:.2?} ({} samples each)",
        median(adds.clone()),
        max(&adds),
        median(removes.clone()),
        max(&removes),
        adds.len()
    );
}
