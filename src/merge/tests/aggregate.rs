//! Grouping: count/sum/min/max/avg/bool_and/bool_or with and without GROUP BY, HAVING,
//! DISTINCT, ORDER BY/LIMIT over groups, the `max_rows` cap, and results encoded in the
//! visible column's type (sum of int8 is numeric, avg of integers is numeric with Postgres'
//! scale).
//!
//! Outputs are written as a short spec: `c0` passes column 0, `count1`, `sum1`, `min1`,
//! `max1`, `and1`, `or1` merge column 1, `avg1/2` is an avg from the sum in column 1 and the
//! count in column 2.

use super::{desc, drive, order, row, shard, tdesc};
use crate::merge::engine::Merger;
use crate::merge::error::MergeError;
use crate::merge::plan::{AggKind, CmpOp, MergePlan, Output, Predicate};
use crate::merge::value::oid::*;

fn outputs(spec: &str) -> Vec<Output> {
    spec.split_whitespace()
        .map(|o| {
            let split = o.find(|c: char| c.is_ascii_digit()).expect("an index");
            let (kind, idx) = o.split_at(split);
            if kind == "avg" {
                let (s, c) = idx.split_once('/').expect("avg sum/count");
                return Output::Avg {
                    sum: s.parse().expect("index"),
                    count: c.parse().expect("index"),
                };
            }
            let input = idx.parse().expect("index");
            let kind = match kind {
                "c" => return Output::Column(input),
                "count" => AggKind::Count,
                "sum" => AggKind::Sum,
                "min" => AggKind::Min,
                "max" => AggKind::Max,
                "and" => AggKind::BoolAnd,
                "or" => AggKind::BoolOr,
                other => panic!("unknown output {other}"),
            };
            Output::Agg { kind, input }
        })
        .collect()
}

/// An aggregating plan: visible outputs from `spec`, grouped by `group_by`.
fn agg(spec: &str, group_by: &[usize]) -> MergePlan {
    let outputs = outputs(spec);
    MergePlan {
        visible: outputs.len(),
        outputs,
        group_by: group_by.to_vec(),
        aggregate: true,
        ..MergePlan::default()
    }
}

fn cmp(column: usize, op: CmpOp, literal: &str) -> Predicate {
    Predicate::Compare {
        column,
        op,
        literal: literal.into(),
    }
}

/// Column names and types of a text RowDescription.
type Cols = &'static [(&'static str, u32)];

struct Case {
    name: &'static str,
    cols: &'static [(&'static str, u32)],
    plan: MergePlan,
    shards: &'static [&'static str],
    /// Expected rows; sorted before comparing when the plan has no ORDER BY.
    want: &'static [&'static str],
}

fn cases() -> Vec<Case> {
    let kc: &[(&str, u32)] = &[("k", TEXT), ("count", INT8)];
    vec![
        Case {
            name: "count without group by",
            cols: &[("count", INT8)],
            plan: agg("count0", &[]),
            shards: &["3", "0", "5"],
            want: &["8"],
        },
        Case {
            name: "count of empty shards",
            cols: &[("count", INT8)],
            plan: agg("count0", &[]),
            shards: &["0", "0", "0"],
            want: &["0"],
        },
        Case {
            name: "no shard row at all still makes one row",
            cols: &[("count", INT8), ("sum", INT8), ("max", INT4)],
            plan: agg("count0 sum1 max2", &[]),
            shards: &["", "", ""],
            want: &["0|NULL|NULL"],
        },
        Case {
            name: "sum of int4 (bigint shard sums)",
            cols: &[("sum", INT8)],
            plan: agg("sum0", &[]),
            shards: &["5", "NULL", "-2"],
            want: &["3"],
        },
        Case {
            name: "sum all NULL",
            cols: &[("sum", INT8)],
            plan: agg("sum0", &[]),
            shards: &["NULL", "NULL", "NULL"],
            want: &["NULL"],
        },
        Case {
            name: "sum of int8 (numeric shard sums)",
            cols: &[("sum", NUMERIC)],
            plan: agg("sum0", &[]),
            shards: &["9223372036854775807", "9223372036854775807", "NULL"],
            want: &["18446744073709551614"],
        },
        Case {
            name: "sum of numeric keeps the scale",
            cols: &[("sum", NUMERIC)],
            plan: agg("sum0", &[]),
            shards: &["1.50", "2.255", "-0.005"],
            want: &["3.750"],
        },
        Case {
            name: "sum of float8",
            cols: &[("sum", FLOAT8)],
            plan: agg("sum0", &[]),
            shards: &["1.5", "2.25", "NULL"],
            want: &["3.75"],
        },
        Case {
            name: "min and max by value",
            cols: &[("min", INT4), ("max", INT4)],
            plan: agg("min0 max1", &[]),
            shards: &["2|9", "10|10", "-3|4"],
            want: &["-3|10"],
        },
        Case {
            name: "min and max of text",
            cols: &[("min", TEXT), ("max", TEXT)],
            plan: agg("min0 max1", &[]),
            shards: &["b|x", "a|y", "B|Y"],
            want: &["B|y"],
        },
        Case {
            name: "min and max skip NULL",
            cols: &[("min", NUMERIC), ("max", DATE)],
            plan: agg("min0 max1", &[]),
            shards: &["NULL|NULL", "5.0|1999-12-31", "-0.5|0044-03-15 BC"],
            want: &["-0.5|1999-12-31"],
        },
        Case {
            name: "bool_and and bool_or",
            cols: &[("and", BOOL), ("or", BOOL)],
            plan: agg("and0 or1", &[]),
            shards: &["t|f", "f|f", "NULL|NULL"],
            want: &["f|f"],
        },
        Case {
            name: "bool_and and bool_or true",
            cols: &[("and", BOOL), ("or", BOOL)],
            plan: agg("and0 or1", &[]),
            shards: &["t|t", "t|f", "NULL|NULL"],
            want: &["t|t"],
        },
        Case {
            name: "bool_and of all NULL",
            cols: &[("and", BOOL)],
            plan: agg("and0", &[]),
            shards: &["NULL", "NULL"],
            want: &["NULL"],
        },
        Case {
            name: "avg of integers is numeric with 16 digits",
            cols: &[("avg", NUMERIC), ("s", INT8), ("n", INT8)],
            plan: agg("avg1/2", &[]),
            shards: &[
                "1.00000000000000000000|1|1",
                "2.0000000000000000|2|1",
                "NULL|NULL|0",
            ],
            want: &["1.5000000000000000"],
        },
        Case {
            name: "avg of one third",
            cols: &[("avg", NUMERIC), ("s", INT8), ("n", INT8)],
            plan: agg("avg1/2", &[]),
            shards: &["x|7|2", "x|1|1"],
            want: &["2.6666666666666667"],
        },
        Case {
            name: "avg of nothing is NULL",
            cols: &[("avg", NUMERIC), ("s", INT8), ("n", INT8)],
            plan: agg("avg1/2", &[]),
            shards: &["NULL|NULL|0", "NULL|NULL|0"],
            want: &["NULL"],
        },
        Case {
            name: "avg of numeric",
            cols: &[("avg", NUMERIC), ("s", NUMERIC), ("n", INT8)],
            plan: agg("avg1/2", &[]),
            shards: &["x|1.50|1", "x|2.255|1"],
            want: &["1.8775000000000000"],
        },
        Case {
            name: "avg of int8 (numeric sums)",
            cols: &[("avg", NUMERIC), ("s", NUMERIC), ("n", INT8)],
            plan: agg("avg1/2", &[]),
            shards: &["x|123456789012|1", "x|1|1"],
            want: &["61728394506.50000000"],
        },
        Case {
            name: "avg of float8",
            cols: &[("avg", FLOAT8), ("s", FLOAT8), ("n", INT8)],
            plan: agg("avg1/2", &[]),
            shards: &["x|1|1", "x|2.5|2"],
            want: &["1.1666666666666667"],
        },
        Case {
            name: "group by",
            cols: kc,
            plan: MergePlan {
                order_by: order("0"),
                ..agg("c0 count1", &[0])
            },
            shards: &["a|2;b|1", "a|3;c|1", "b|4"],
            want: &["a|5", "b|5", "c|1"],
        },
        Case {
            name: "group by without order",
            cols: kc,
            plan: agg("c0 count1", &[0]),
            shards: &["a|2;b|1", "a|3;c|1", "b|4"],
            want: &["a|5", "b|5", "c|1"],
        },
        Case {
            name: "group by int keys decoded",
            cols: &[("k", INT4), ("count", INT8)],
            plan: MergePlan {
                order_by: order("0"),
                ..agg("c0 count1", &[0])
            },
            shards: &["10|1;9|1", "9|2", "-1|1;10|5"],
            want: &["-1|1", "9|3", "10|6"],
        },
        Case {
            name: "group by NULL key",
            cols: kc,
            plan: MergePlan {
                order_by: order("0"),
                ..agg("c0 count1", &[0])
            },
            shards: &["NULL|1;a|1", "NULL|2"],
            want: &["a|1", "NULL|3"],
        },
        Case {
            name: "group by two keys, one hidden",
            cols: &[("n", INT8), ("a", INT4), ("b", TEXT)],
            plan: MergePlan {
                order_by: order("1, 2 desc"),
                ..agg("count0", &[1, 2])
            },
            shards: &["1|1|x;2|1|y", "3|1|x;1|2|x", "4|1|y"],
            want: &["6", "4", "1"],
        },
        Case {
            name: "having on an aggregate",
            cols: kc,
            plan: MergePlan {
                having: Some(cmp(1, CmpOp::Gt, "4")),
                order_by: order("0"),
                ..agg("c0 count1", &[0])
            },
            shards: &["a|2;b|1", "a|3;c|1", "b|4"],
            want: &["a|5", "b|5"],
        },
        Case {
            name: "having with and, not",
            cols: kc,
            plan: MergePlan {
                having: Some(Predicate::And(
                    Box::new(cmp(1, CmpOp::GtEq, "5")),
                    Box::new(Predicate::Not(Box::new(cmp(0, CmpOp::Eq, "b")))),
                )),
                ..agg("c0 count1", &[0])
            },
            shards: &["a|2;b|1", "a|3;c|1", "b|4"],
            want: &["a|5"],
        },
        Case {
            name: "having on a hidden aggregate",
            cols: &[("k", TEXT), ("s", INT8)],
            plan: MergePlan {
                having: Some(cmp(1, CmpOp::Gt, "10")),
                hidden_outputs: vec![(
                    1,
                    Output::Agg {
                        kind: AggKind::Sum,
                        input: 1,
                    },
                )],
                ..agg("c0", &[0])
            },
            shards: &["a|6;b|1", "a|5;b|2"],
            want: &["a"],
        },
        Case {
            name: "having compares columns and NULL",
            cols: &[("k", TEXT), ("mn", INT4), ("mx", INT4)],
            plan: MergePlan {
                having: Some(Predicate::Or(
                    Box::new(Predicate::CompareColumns {
                        left: 1,
                        op: CmpOp::Eq,
                        right: 2,
                    }),
                    Box::new(Predicate::IsNull {
                        column: 1,
                        negated: false,
                    }),
                )),
                order_by: order("0"),
                ..agg("c0 min1 max2", &[0])
            },
            shards: &["a|1|1;b|1|2;c|NULL|NULL", "a|1|1;b|3|3"],
            want: &["a|1|1", "c|NULL|NULL"],
        },
        Case {
            name: "having with a fraction against bigint",
            cols: kc,
            plan: MergePlan {
                having: Some(cmp(1, CmpOp::Lt, "2.5")),
                ..agg("c0 count1", &[0])
            },
            shards: &["a|2;b|1", "a|3;c|1", "b|4"],
            want: &["c|1"],
        },
        Case {
            name: "having false without group by gives no row",
            cols: &[("count", INT8)],
            plan: MergePlan {
                having: Some(cmp(0, CmpOp::Gt, "100")),
                ..agg("count0", &[])
            },
            shards: &["3", "5"],
            want: &[],
        },
        Case {
            name: "order by aggregate, limit",
            cols: kc,
            plan: MergePlan {
                order_by: order("1 desc"),
                limit: Some(2),
                ..agg("c0 count1", &[0])
            },
            shards: &["a|2;b|1", "a|3;c|9", "b|1"],
            want: &["c|9", "a|5"],
        },
        Case {
            name: "order by hidden aggregate, offset",
            cols: &[("k", TEXT), ("s", INT8)],
            plan: MergePlan {
                order_by: order("1"),
                offset: 1,
                hidden_outputs: vec![(
                    1,
                    Output::Agg {
                        kind: AggKind::Sum,
                        input: 1,
                    },
                )],
                ..agg("c0", &[0])
            },
            shards: &["a|6;b|1;c|0", "a|5;b|2;c|1"],
            want: &["b", "a"],
        },
        Case {
            name: "distinct",
            cols: &[("k", INT4)],
            plan: MergePlan {
                distinct: true,
                order_by: order("0"),
                ..super::plain(1)
            },
            shards: &["1;2;2", "2;3", "1"],
            want: &["1", "2", "3"],
        },
        Case {
            name: "distinct without order",
            cols: &[("k", TEXT), ("n", INT4)],
            plan: MergePlan {
                distinct: true,
                ..super::plain(2)
            },
            shards: &["a|1;a|2", "a|1;b|1", "a|2"],
            want: &["a|1", "a|2", "b|1"],
        },
        Case {
            name: "distinct with NULL and limit",
            cols: &[("k", INT4)],
            plan: MergePlan {
                distinct: true,
                order_by: order("0 desc"),
                limit: Some(2),
                ..super::plain(1)
            },
            shards: &["NULL;1", "NULL;3", "2"],
            want: &["NULL", "3"],
        },
        Case {
            name: "distinct over aggregates",
            cols: &[("count", INT8), ("k", TEXT)],
            plan: MergePlan {
                distinct: true,
                order_by: order("0"),
                ..agg("count0", &[1])
            },
            shards: &["1|a;2|b", "1|c", "3|d"],
            want: &["1", "2", "3"],
        },
    ]
}

#[test]
fn aggregate_cases() {
    for c in cases() {
        let shards: Vec<_> = c.shards.iter().map(|s| shard(s)).collect();
        for seed in 0..4 {
            let got = drive(c.plan.clone(), &tdesc(c.cols), &shards, 100, seed)
                .unwrap_or_else(|e| panic!("{}: {e}", c.name));
            let mut rows = got.rows.clone();
            let mut want: Vec<String> = c.want.iter().map(|s| s.to_string()).collect();
            if c.plan.order_by.is_empty() {
                rows.sort();
                want.sort();
            }
            assert_eq!(rows, want, "{} (seed {seed})", c.name);
            assert_eq!(got.tag, format!("SELECT {}", c.want.len()), "{}", c.name);
        }
    }
}

#[test]
fn too_many_groups_is_54000() {
    let shards = vec![shard("a|1;b|1"), shard("c|1;a|1")];
    let plan = agg("c0 count1", &[0]);
    let kc = tdesc(&[("k", TEXT), ("count", INT8)]);
    assert!(
        drive(plan.clone(), &kc, &shards, 3, 0).is_ok(),
        "3 groups fit in 3"
    );
    let e = drive(plan, &kc, &shards, 2, 0).expect_err("3 groups exceed 2");
    assert_eq!(e, MergeError::TooManyRows { limit: 2 });
    assert_eq!(e.sqlstate(), "54000");
    assert!(e.to_string().contains("max_merge_rows"), "{e}");
    let distinct = MergePlan {
        distinct: true,
        ..super::plain(1)
    };
    let e = drive(distinct, &tdesc(&[("k", INT4)]), &[shard("1;2;3;1")], 2, 0).expect_err("cap");
    assert_eq!(e.sqlstate(), "54000");
}

#[test]
fn overflows_are_22003() {
    let cases: Vec<(Cols, MergePlan, Vec<&str>)> = vec![
        (
            &[("sum", INT8)],
            agg("sum0", &[]),
            vec!["9223372036854775807", "1"],
        ),
        (
            &[("count", INT8)],
            agg("count0", &[]),
            vec!["9223372036854775807", "1"],
        ),
        (&[("sum", FLOAT8)], agg("sum0", &[]), vec!["1e308", "1e308"]),
    ];
    for (cols, plan, rows) in cases {
        let shards: Vec<_> = rows.iter().map(|r| shard(r)).collect();
        let e = drive(plan, &tdesc(cols), &shards, 10, 0).expect_err("overflows");
        assert_eq!(e.sqlstate(), "22003", "{e}");
    }
}

#[test]
fn binary_results_are_encoded_in_the_column_format() {
    // count(*) int8, avg(int4) numeric from hidden sum int8 and count int8, all binary.
    let d = desc(&[
        ("count", INT8, 1),
        ("avg", NUMERIC, 1),
        ("s", INT8, 1),
        ("n", INT8, 1),
    ]);
    let b8 = |v: i64| Some(v.to_be_bytes().to_vec());
    let shards = vec![
        vec![row(&[b8(1), None, b8(1), b8(1)])],
        vec![row(&[b8(1), None, b8(2), b8(1)])],
    ];
    let got = drive(agg("count0 avg2/3", &[]), &d, &shards, 10, 0).expect("merges");
    assert_eq!(got.raw.len(), 1);
    assert_eq!(got.raw[0][0], b8(2));
    // 1.5000000000000000: ndigits 2, weight 0, positive, dscale 16, digits 1 and 5000.
    let want = [0, 2, 0, 0, 0, 0, 0, 16, 0, 1, 0x13, 0x88];
    assert_eq!(got.raw[0][1].as_deref(), Some(&want[..]));
}

#[test]
fn plans_the_merge_cannot_compute_are_refused() {
    let cases: Vec<(Cols, MergePlan, &str)> = vec![
        (&[("sum", 1186)], agg("sum0", &[]), "0A000"),
        (&[("max", 1186)], agg("max0", &[]), "0A000"),
        (
            &[("avg", 1186), ("s", 1186), ("n", INT8)],
            agg("avg1/2", &[]),
            "0A000",
        ),
        (
            &[("k", TEXT)],
            MergePlan {
                having: Some(cmp(0, CmpOp::Gt, "a")),
                ..super::plain(1)
            },
            "XX000",
        ),
        (
            &[("n", INT8)],
            MergePlan {
                having: Some(cmp(0, CmpOp::Gt, "many")),
                ..agg("count0", &[])
            },
            "22P02",
        ),
        (
            &[("n", INT8)],
            MergePlan {
                having: Some(cmp(3, CmpOp::Gt, "1")),
                ..agg("count0", &[])
            },
            "XX000",
        ),
        (
            &[("n", INT8)],
            MergePlan {
                hidden_outputs: vec![(0, Output::Column(0))],
                ..agg("count0", &[])
            },
            "XX000",
        ),
    ];
    for (cols, plan, state) in cases {
        let e = Merger::new(plan.clone(), &tdesc(cols), 2, 10).err();
        let e = e.unwrap_or_else(|| panic!("{plan:?} accepted"));
        assert_eq!(e.sqlstate(), state, "{e}");
    }
}
