//! The bucket moves that spread a hash scheme evenly over a set of shards while moving as few
//! buckets as possible. Pure: no IO.
//!
//! With B buckets over k shards every shard ends with floor(B/k) or ceil(B/k) buckets; the
//! B mod k larger quotas go to the shards that already hold the most, so nothing moves that
//! need not. A shard keeps its lowest-numbered buckets up to its quota (runs stay
//! contiguous); every other bucket moves, to the shards below their quota, in bucket order.
//! The number of moves is the minimum: exactly the buckets above some shard's quota.

/// One bucket that changes shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Move {
    pub bucket: u32,
    pub from: String,
    pub to: String,
}

/// A run of consecutive buckets moving between the same two shards (for printing).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MoveRange {
    pub first: u32,
    pub last: u32,
    pub from: String,
    pub to: String,
}

/// The moves that take `current` (shard name per bucket) to an even spread over `targets`.
pub fn plan(current: &[String], targets: &[String]) -> Result<Vec<Move>, String> {
    if targets.is_empty() {
        return Err("no target shards given".into());
    }
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].contains(t) {
            return Err(format!("shard \"{t}\" is listed twice"));
        }
    }
    let b = current.len();
    let k = targets.len();
    if b < k {
        return Err(format!("{b} buckets cannot be spread over {k} shards"));
    }
    let held = |t: &String| current.iter().filter(|s| *s == t).count();
    // Larger quotas to the shards holding the most already (ties: the order given).
    let mut order: Vec<usize> = (0..k).collect();
    order.sort_by_key(|&i| (std::cmp::Reverse(held(&targets[i])), i));
    let mut quota = vec![b / k; k];
    for &i in order.iter().take(b % k) {
        quota[i] += 1;
    }
    let mut kept = vec![0usize; k];
    let mut moving = Vec::new();
    for (bucket, shard) in current.iter().enumerate() {
        match targets.iter().position(|t| t == shard) {
            Some(i) if kept[i] < quota[i] => kept[i] += 1,
            _ => moving.push(bucket),
        }
    }
    let mut moves = Vec::with_capacity(moving.len());
    let mut next = 0;
    for bucket in moving {
        while kept[next] >= quota[next] {
            next += 1;
        }
        kept[next] += 1;
        moves.push(Move {
            bucket: bucket as u32,
            from: current[bucket].clone(),
            to: targets[next].clone(),
        });
    }
    Ok(moves)
}

/// The map after `moves`.
pub fn apply(current: &[String], moves: &[Move]) -> Vec<String> {
    let mut map = current.to_vec();
    for m in moves {
        map[m.bucket as usize] = m.to.clone();
    }
    map
}

/// Consecutive buckets with the same source and target, as ranges.
pub fn ranges(moves: &[Move]) -> Vec<MoveRange> {
    let mut out: Vec<MoveRange> = Vec::new();
    for m in moves {
        match out.last_mut() {
            Some(r) if r.last + 1 == m.bucket && r.from == m.from && r.to == m.to => {
                r.last = m.bucket
            }
            _ => out.push(MoveRange {
                first: m.bucket,
                last: m.bucket,
                from: m.from.clone(),
                to: m.to.clone(),
            }),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn map(runs: &[(&str, usize)]) -> Vec<String> {
        runs.iter()
            .flat_map(|(s, n)| std::iter::repeat_n(s.to_string(), *n))
            .collect()
    }

    fn counts(m: &[String], shards: &[&str]) -> Vec<usize> {
        shards
            .iter()
            .map(|s| m.iter().filter(|x| x == s).count())
            .collect()
    }

    #[test]
    fn two_to_three_moves_a_third() {
        let cur = map(&[("s0", 512), ("s1", 512)]);
        let moves = plan(&cur, &names(&["s0", "s1", "s2"])).unwrap();
        // 1024 / 3: quotas 342, 341, 341; s0 and s1 each give up what is above theirs.
        assert_eq!(moves.len(), 341);
        assert!(moves.iter().all(|m| m.to == "s2"));
        let after = apply(&cur, &moves);
        assert_eq!(counts(&after, &["s0", "s1", "s2"]), vec![342, 341, 341]);
        // Each source gives up its highest buckets: one contiguous range per source.
        assert_eq!(ranges(&moves).len(), 2);
    }

    #[test]
    fn already_even_moves_nothing() {
        let cur = map(&[("s0", 4), ("s1", 4)]);
        assert!(plan(&cur, &names(&["s0", "s1"])).unwrap().is_empty());
    }

    #[test]
    fn removing_a_shard_moves_exactly_its_buckets() {
        let cur = map(&[("s0", 3), ("s1", 3), ("s2", 2)]);
        let moves = plan(&cur, &names(&["s0", "s1"])).unwrap();
        assert_eq!(moves.len(), 2);
        assert!(moves.iter().all(|m| m.from == "s2"));
        let after = apply(&cur, &moves);
        assert_eq!(counts(&after, &["s0", "s1", "s2"]), vec![4, 4, 0]);
    }

    #[test]
    fn moves_are_minimal_and_even_for_many_shapes() {
        for (b, from, to) in [
            (8usize, 1usize, 3usize),
            (16, 3, 4),
            (1024, 4, 5),
            (1024, 5, 4),
            (64, 2, 7),
        ] {
            let shards: Vec<String> = (0..from.max(to)).map(|i| format!("s{i}")).collect();
            let cur: Vec<String> = (0..b).map(|x| shards[x * from / b].clone()).collect();
            let targets = shards[..to].to_vec();
            let moves = plan(&cur, &targets).unwrap();
            let after = apply(&cur, &moves);
            let c: Vec<usize> = targets
                .iter()
                .map(|t| after.iter().filter(|x| *x == t).count())
                .collect();
            assert!(
                c.iter().all(|&n| n == b / to || n == b / to + 1),
                "{b} {from}->{to}: {c:?}"
            );
            assert!(after.iter().all(|s| targets.contains(s)));
            // Lower bound: every bucket above its shard's final quota must move.
            let lower: usize = shards
                .iter()
                .map(|s| {
                    let have = cur.iter().filter(|x| *x == s).count();
                    let keep = targets
                        .iter()
                        .position(|t| t == s)
                        .map(|i| c[i])
                        .unwrap_or(0);
                    have.saturating_sub(keep)
                })
                .sum();
            assert_eq!(moves.len(), lower, "{b} {from}->{to}");
        }
    }

    #[test]
    fn bad_input_is_an_error() {
        assert!(plan(&map(&[("s0", 2)]), &[]).is_err());
        assert!(plan(&map(&[("s0", 2)]), &names(&["s0", "s0"])).is_err());
        assert!(plan(&map(&[("s0", 2)]), &names(&["a", "b", "c"])).is_err());
    }
}
