//! The streaming shapes: k-way merge for ORDER BY (directions, NULLS placement, several keys,
//! empty shards, LIMIT/OFFSET with early `Done`, hidden columns), pass-through, the
//! `wants()` protocol, and bounded memory over 600,000 rows.

use bytes::BytesMut;

use super::{desc, drive, order, plain, render, row, shard, tdesc, trow};
use crate::merge::engine::{Merger, Progress};
use crate::merge::error::MergeError;
use crate::merge::plan::MergePlan;
use crate::merge::value::oid::*;

struct Case {
    name: &'static str,
    cols: &'static [(&'static str, u32)],
    visible: usize,
    order: &'static str,
    limit: Option<u64>,
    offset: u64,
    shards: &'static [&'static str],
    want: &'static [&'static str],
}

const I: &[(&str, u32)] = &[("a", INT4)];

const CASES: &[Case] = &[
    Case {
        name: "asc interleaved",
        cols: I,
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["1;4;7", "2;5;8", "3;6;9"],
        want: &["1", "2", "3", "4", "5", "6", "7", "8", "9"],
    },
    Case {
        name: "desc interleaved",
        cols: I,
        visible: 1,
        order: "0 desc",
        limit: None,
        offset: 0,
        shards: &["7;4;1", "8;5;2", "9;6;3"],
        want: &["9", "8", "7", "6", "5", "4", "3", "2", "1"],
    },
    Case {
        name: "by number, not text",
        cols: I,
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["-10;2;10", "9;100", "-2;1"],
        want: &["-10", "-2", "1", "2", "9", "10", "100"],
    },
    Case {
        name: "asc puts nulls last",
        cols: I,
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["1;NULL", "2;3", "NULL"],
        want: &["1", "2", "3", "NULL", "NULL"],
    },
    Case {
        name: "asc nulls first",
        cols: I,
        visible: 1,
        order: "0 asc nulls first",
        limit: None,
        offset: 0,
        shards: &["NULL;1", "2;3", "NULL"],
        want: &["NULL", "NULL", "1", "2", "3"],
    },
    Case {
        name: "desc puts nulls first",
        cols: I,
        visible: 1,
        order: "0 desc",
        limit: None,
        offset: 0,
        shards: &["NULL;3;1", "2", "NULL;4"],
        want: &["NULL", "NULL", "4", "3", "2", "1"],
    },
    Case {
        name: "desc nulls last",
        cols: I,
        visible: 1,
        order: "0 desc nulls last",
        limit: None,
        offset: 0,
        shards: &["3;1;NULL", "2", "4;NULL"],
        want: &["4", "3", "2", "1", "NULL", "NULL"],
    },
    Case {
        name: "two keys",
        cols: &[("k", TEXT), ("n", INT4)],
        visible: 2,
        order: "0, 1 desc",
        limit: None,
        offset: 0,
        shards: &["a|3;a|1;b|2", "a|2;c|1", "b|5"],
        want: &["a|3", "a|2", "a|1", "b|5", "b|2", "c|1"],
    },
    Case {
        name: "three keys with nulls",
        cols: &[("x", INT4), ("y", TEXT), ("z", NUMERIC)],
        visible: 3,
        order: "0, 1 nulls first, 2 desc",
        limit: None,
        offset: 0,
        shards: &["1|NULL|5;1|a|2.5", "1|NULL|1;1|a|2.50;2|a|0", "1|a|3"],
        want: &[
            "1|NULL|5", "1|NULL|1", "1|a|3", "1|a|2.5", "1|a|2.50", "2|a|0",
        ],
    },
    Case {
        name: "empty shards",
        cols: I,
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["", "1;2", ""],
        want: &["1", "2"],
    },
    Case {
        name: "all shards empty",
        cols: I,
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["", "", ""],
        want: &[],
    },
    Case {
        name: "limit",
        cols: I,
        visible: 1,
        order: "0",
        limit: Some(2),
        offset: 0,
        shards: &["1;4;7", "2;5;8", "3;6;9"],
        want: &["1", "2"],
    },
    Case {
        name: "offset and limit",
        cols: I,
        visible: 1,
        order: "0",
        limit: Some(2),
        offset: 3,
        shards: &["1;4;7", "2;5;8", "3;6;9"],
        want: &["4", "5"],
    },
    Case {
        name: "offset past the end",
        cols: I,
        visible: 1,
        order: "0",
        limit: None,
        offset: 10,
        shards: &["1;4", "2", "3"],
        want: &[],
    },
    Case {
        name: "limit 0",
        cols: I,
        visible: 1,
        order: "0",
        limit: Some(0),
        offset: 0,
        shards: &["1", "2", "3"],
        want: &[],
    },
    Case {
        name: "limit past the end",
        cols: I,
        visible: 1,
        order: "0 desc",
        limit: Some(50),
        offset: 1,
        shards: &["5;1", "", "3"],
        want: &["3", "1"],
    },
    Case {
        name: "hidden sort key dropped",
        cols: &[("name", TEXT), ("k", INT4)],
        visible: 1,
        order: "1",
        limit: None,
        offset: 0,
        shards: &["x|1;y|5", "z|2", ""],
        want: &["x", "z", "y"],
    },
    Case {
        name: "text in collation C",
        cols: &[("t", TEXT)],
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["B;a", "Z;b", "_"],
        want: &["B", "Z", "_", "a", "b"],
    },
    Case {
        name: "floats with NaN and infinities",
        cols: &[("f", FLOAT8)],
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["-Infinity;1.5;NaN", "-0.5;2", "Infinity"],
        want: &["-Infinity", "-0.5", "1.5", "2", "Infinity", "NaN"],
    },
    Case {
        name: "timestamps before 2000",
        cols: &[("t", TIMESTAMP)],
        visible: 1,
        order: "0 desc",
        limit: None,
        offset: 0,
        shards: &[
            "2001-01-01 00:00:00;1969-07-20 20:17:40",
            "1999-12-31 23:59:59.5",
        ],
        want: &[
            "2001-01-01 00:00:00",
            "1999-12-31 23:59:59.5",
            "1969-07-20 20:17:40",
        ],
    },
    Case {
        name: "dates",
        cols: &[("d", DATE)],
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &["0044-03-15 BC;2024-01-01", "1999-12-31;infinity"],
        want: &["0044-03-15 BC", "1999-12-31", "2024-01-01", "infinity"],
    },
    Case {
        name: "uuids",
        cols: &[("u", UUID)],
        visible: 1,
        order: "0",
        limit: None,
        offset: 0,
        shards: &[
            "00000000-0000-0000-0000-000000000002",
            "00000000-0000-0000-0000-000000000001;ff000000-0000-0000-0000-000000000000",
        ],
        want: &[
            "00000000-0000-0000-0000-000000000001",
            "00000000-0000-0000-0000-000000000002",
            "ff000000-0000-0000-0000-000000000000",
        ],
    },
    Case {
        name: "bools",
        cols: &[("b", BOOL), ("n", INT4)],
        visible: 2,
        order: "0, 1",
        limit: None,
        offset: 0,
        shards: &["f|2;t|1", "f|1"],
        want: &["f|1", "f|2", "t|1"],
    },
];

fn plan_of(c: &Case) -> MergePlan {
    MergePlan {
        order_by: order(c.order),
        limit: c.limit,
        offset: c.offset,
        ..plain(c.visible)
    }
}

#[test]
fn k_way_merge_cases() {
    for c in CASES {
        let shards: Vec<_> = c.shards.iter().map(|s| shard(s)).collect();
        for seed in 0..6 {
            let got = drive(plan_of(c), &tdesc(c.cols), &shards, 10, seed)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            assert_eq!(got.rows, c.want, "{} (seed {seed})", c.name);
            assert_eq!(got.tag, format!("SELECT {}", c.want.len()), "{}", c.name);
            assert!(
                got.peak_buffered <= shards.len(),
                "{}: held {}",
                c.name,
                got.peak_buffered
            );
        }
    }
}

#[test]
fn limit_stops_reading_early() {
    let shards: Vec<_> = (0..3)
        .map(|s| (0..1000).map(|i| trow(&(i * 3 + s).to_string())).collect())
        .collect();
    let plan = MergePlan {
        order_by: order("0"),
        limit: Some(5),
        offset: 2,
        ..plain(1)
    };
    let got = drive(plan, &tdesc(I), &shards, 10, 0).expect("merges");
    assert_eq!(got.rows, ["2", "3", "4", "5", "6"]);
    let pushed: usize = got.pushed.iter().sum();
    assert!(pushed <= 7 + 3, "read {pushed} rows for LIMIT 5 OFFSET 2");
}

#[test]
fn pass_through_keeps_every_row_once() {
    let shards: Vec<_> = ["1;2;3", "", "4;5", "6"].iter().map(|s| shard(s)).collect();
    for seed in 0..6 {
        let mut got = drive(plain(1), &tdesc(I), &shards, 10, seed).expect("merges");
        got.rows.sort();
        assert_eq!(got.rows, ["1", "2", "3", "4", "5", "6"]);
        let limited = MergePlan {
            limit: Some(4),
            offset: 1,
            ..plain(1)
        };
        let got = drive(limited, &tdesc(I), &shards, 10, seed).expect("merges");
        assert_eq!((got.rows.len(), got.tag.as_str()), (4, "SELECT 4"));
    }
    // Hidden columns are dropped here too.
    let two = shard("a|1;b|2");
    let got = drive(plain(1), &tdesc(&[("t", TEXT), ("h", INT4)]), &[two], 10, 0).expect("merges");
    assert_eq!(got.rows, ["a", "b"]);
}

#[test]
fn binary_columns_merge_by_value() {
    let d = desc(&[("n", INT8, 1), ("x", NUMERIC, 1)]);
    let b8 = |v: i64| Some(v.to_be_bytes().to_vec());
    // numeric 1.5 and 1.25 in binary: ndigits, weight, sign, dscale, digits.
    let num = |digits: &[u16], dscale: u16| {
        let mut b = vec![0, digits.len() as u8, 0, 0, 0, 0, 0, dscale as u8];
        for d in digits {
            b.extend_from_slice(&d.to_be_bytes());
        }
        Some(b)
    };
    let shards = vec![
        vec![
            row(&[b8(-5), num(&[1, 5000], 1)]),
            row(&[b8(300), num(&[1, 2500], 2)]),
        ],
        vec![row(&[b8(-400), num(&[2], 0)]), row(&[b8(7), None])],
    ];
    let plan = MergePlan {
        order_by: order("0"),
        ..plain(2)
    };
    let got = drive(plan, &d, &shards, 10, 0).expect("merges");
    let firsts: Vec<i64> = got
        .raw
        .iter()
        .map(|r| {
            let b = r[0].as_deref().expect("not NULL");
            i64::from_be_bytes(b.try_into().expect("8 bytes"))
        })
        .collect();
    assert_eq!(firsts, [-400, -5, 7, 300]);
    let plan = MergePlan {
        order_by: order("1 desc"),
        ..plain(2)
    };
    let shards = vec![
        vec![shards[0][0].clone(), shards[0][1].clone()],
        vec![shards[1][1].clone(), shards[1][0].clone()],
    ];
    let got = drive(plan, &d, &shards, 10, 0).expect("merges");
    assert_eq!(got.rows.len(), 4);
    assert_eq!(got.raw[0][1], None, "NULL first for DESC");
    assert_eq!(got.raw[1][1], num(&[2], 0), "then 2");
    assert_eq!(got.raw[3][1], num(&[1, 2500], 2), "1.25 last");
}

/// The session's protocol, step by step: one head per shard, `drain` waits for every
/// unfinished shard, a row for a shard that already has one is refused.
#[test]
fn wants_protocol() {
    let plan = MergePlan {
        order_by: order("0"),
        ..plain(1)
    };
    let mut m = Merger::new(plan, &tdesc(I), 3, 10).expect("plan fits");
    let mut out = BytesMut::new();
    assert_eq!(m.wants().collect::<Vec<_>>(), [0, 1, 2]);
    m.push_row(0, &trow("1")).expect("wanted");
    assert!(matches!(
        m.push_row(0, &trow("2")),
        Err(MergeError::Contract(_))
    ));
    assert_eq!(m.wants().collect::<Vec<_>>(), [1, 2]);
    assert_eq!(m.drain(&mut out).expect("drains"), Progress::NeedInput);
    assert!(
        out.is_empty(),
        "nothing is emitted before every shard has a head"
    );
    m.push_row(1, &trow("3")).expect("wanted");
    m.finish_shard(2).expect("finishes");
    assert_eq!(m.drain(&mut out).expect("drains"), Progress::NeedInput);
    assert_eq!(render(&out), ["1"]);
    assert_eq!(m.wants().collect::<Vec<_>>(), [0]);
    assert_eq!(m.buffered_rows(), 1);
    m.finish_shard(0).expect("finishes");
    assert_eq!(m.drain(&mut out).expect("drains"), Progress::NeedInput);
    assert_eq!(render(&out), ["1", "3"]);
    assert_eq!(m.wants().collect::<Vec<_>>(), [1]);
    assert!(matches!(
        m.push_row(0, &trow("9")),
        Err(MergeError::Contract(_))
    ));
    assert!(matches!(
        m.push_row(7, &trow("9")),
        Err(MergeError::Contract(_))
    ));
    m.finish_shard(1).expect("finishes");
    assert_eq!(m.drain(&mut out).expect("drains"), Progress::Done);
    assert_eq!(m.command_tag(), "SELECT 2");
    assert_eq!(m.wants().count(), 0);
}

#[test]
fn bad_shard_input_is_an_error() {
    let plan = || MergePlan {
        order_by: order("0"),
        ..plain(1)
    };
    let mut m = Merger::new(plan(), &tdesc(I), 2, 10).expect("plan fits");
    let e = m.push_row(0, &[0, 1, 0, 0]).expect_err("truncated");
    assert_eq!(e.sqlstate(), "XX000");
    let e = m.push_row(0, &trow("1|2")).expect_err("two fields");
    assert!(e.to_string().contains("2 fields"), "{e}");
    let e = m.push_row(0, &trow("x")).expect_err("not an int4");
    assert!(e.to_string().contains("column \"a\""), "{e}");
    // A shard whose rows go backwards (say, sorted by another collation) is caught.
    let mut m = Merger::new(plan(), &tdesc(I), 2, 10).expect("plan fits");
    let mut out = BytesMut::new();
    m.push_row(0, &trow("5")).expect("ok");
    m.push_row(1, &trow("9")).expect("ok");
    m.drain(&mut out).expect("drains");
    let e = m.push_row(0, &trow("4")).expect_err("out of order");
    assert!(matches!(e, MergeError::OutOfOrder { shard: 0, .. }), "{e}");
}

#[test]
fn plans_that_do_not_fit_are_refused() {
    let cases: Vec<(MergePlan, &[u8], &str)> = vec![
        (plain(2), &[], "RowDescription"),
        (plain(2), b"\x00\x01", "RowDescription"),
        (
            MergePlan {
                order_by: order("3"),
                ..plain(1)
            },
            b"",
            "names column 3",
        ),
        (
            MergePlan {
                visible: 1,
                ..MergePlan::default()
            },
            b"",
            "outputs",
        ),
    ];
    for (plan, body, want) in cases {
        let body = if body.is_empty() && want != "RowDescription" {
            tdesc(I)
        } else {
            body.to_vec()
        };
        let e = Merger::new(plan, &body, 2, 10).err().expect("refused");
        assert!(e.to_string().contains(want), "{e} lacks {want}");
    }
    // Ordering by a type the proxy does not read by value would be a wrong order: 0A000.
    let plan = MergePlan {
        order_by: order("0"),
        ..plain(1)
    };
    let e = Merger::new(plan, &tdesc(&[("i", 1186)]), 2, 10)
        .err()
        .expect("refused");
    assert_eq!(e.sqlstate(), "0A000");
}

/// 3 shards x 200,000 sorted rows: the merger never holds more than one row per shard, and
/// the output is the full, sorted union.
#[test]
fn memory_stays_bounded_over_600k_rows() {
    const PER_SHARD: i64 = 200_000;
    let plan = MergePlan {
        order_by: order("0"),
        ..plain(1)
    };
    let mut m = Merger::new(plan, &tdesc(&[("n", INT8), ("pad", TEXT)]), 3, 10).expect("plan fits");
    let mut next = [0i64; 3];
    let mut out = BytesMut::new();
    let mut expected = 0i64;
    let mut peak = 0;
    loop {
        let wants: Vec<usize> = m.wants().collect();
        for s in wants {
            if next[s] < PER_SHARD {
                let v = next[s] * 3 + s as i64;
                m.push_row(s, &trow(&format!("{v}|padding"))).expect("row");
                next[s] += 1;
            } else {
                m.finish_shard(s).expect("finish");
            }
            peak = peak.max(m.buffered_rows());
        }
        let progress = m.drain(&mut out).expect("drains");
        for r in render(&out) {
            assert_eq!(r, expected.to_string());
            expected += 1;
        }
        out.clear();
        if progress == Progress::Done {
            break;
        }
    }
    assert_eq!(expected, 3 * PER_SHARD);
    assert_eq!(m.command_tag(), format!("SELECT {}", 3 * PER_SHARD));
    assert!(peak <= 3, "held {peak} rows");
}

#[test]
fn row_descriptions() {
    let full = desc(&[("name", TEXT, 0), ("k", INT4, 0)]);
    let m = Merger::new(plain(1), &full, 2, 10).expect("plan fits");
    let mut out = BytesMut::new();
    m.row_description(&mut out).expect("writes");
    assert_eq!(
        &out[5..],
        &desc(&[("name", TEXT, 0)])[..],
        "only the visible column"
    );
    assert!(m.check_row_description(1, &full).is_ok());
    let other_type = desc(&[("name", TEXT, 0), ("k", INT8, 0)]);
    assert!(m.check_row_description(1, &other_type).is_err());
    let other_format = desc(&[("name", TEXT, 0), ("k", INT4, 1)]);
    assert!(m.check_row_description(1, &other_format).is_err());
    assert!(m.check_row_description(1, b"\x00").is_err());
}
