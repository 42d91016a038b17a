//! Numeric: text forms keep their scale, sums keep the larger scale, and averages divide with
//! Postgres' result scale and rounding. Expected values were printed by Postgres 15
//! (`(s::numeric / c::numeric)::text`, which is what avg's final step computes).

use std::cmp::Ordering;

use crate::merge::numeric::Numeric;

fn n(s: &str) -> Numeric {
    Numeric::parse(s).unwrap_or_else(|e| panic!("{s}: {e:?}"))
}

#[test]
fn text_round_trips_with_scale() {
    let cases: &[(&str, &str)] = &[
        ("1.50", "1.50"),
        ("1.5", "1.5"),
        ("-0.0015", "-0.0015"),
        ("0", "0"),
        ("0.000", "0.000"),
        ("-0.00", "0.00"),
        ("100000000", "100000000"),
        ("007.10", "7.10"),
        ("+3", "3"),
        ("12345.6789", "12345.6789"),
        ("1e3", "1000"),
        ("1.5e-3", "0.0015"),
        ("2.5E+2", "250"),
        (".5", "0.5"),
        ("5.", "5"),
        ("  42  ", "42"),
        ("nan", "NaN"),
        ("-inf", "-Infinity"),
        ("+Infinity", "Infinity"),
        (
            "123456789012345678901234567890.123456789",
            "123456789012345678901234567890.123456789",
        ),
    ];
    for &(input, want) in cases {
        let v = n(input);
        assert_eq!(v.to_text(), want, "{input}");
        let back = Numeric::from_binary(&v.to_binary().expect("fits")).expect("reads");
        assert_eq!(back.to_text(), want, "{input} through binary");
    }
}

#[test]
fn sums_keep_the_larger_scale() {
    let cases: &[(&str, &str, &str)] = &[
        ("1.5", "2.25", "3.75"),
        ("-1.5", "1.5", "0.0"),
        ("99999999.9999", "0.0001", "100000000.0000"),
        ("-100000000", "0.001", "-99999999.999"),
        ("1.10", "-2", "-0.90"),
        ("0", "0.000", "0.000"),
        ("-5", "-7", "-12"),
        (
            "123456789012345678901234567890",
            "1",
            "123456789012345678901234567891",
        ),
        ("Infinity", "1", "Infinity"),
        ("Infinity", "-Infinity", "NaN"),
        ("NaN", "1", "NaN"),
        ("-Infinity", "-Infinity", "-Infinity"),
    ];
    for &(a, b, want) in cases {
        assert_eq!(n(a).add(&n(b)).to_text(), want, "{a} + {b}");
        assert_eq!(n(b).add(&n(a)).to_text(), want, "{b} + {a}");
    }
}

#[test]
fn averages_divide_like_postgres() {
    let cases: &[(&str, u64, &str)] = &[
        ("3", 2, "1.5000000000000000"),
        ("10", 4, "2.5000000000000000"),
        ("30000", 2, "15000.000000000000"),
        ("3.755", 2, "1.8775000000000000"),
        ("7", 3, "2.3333333333333333"),
        ("8", 3, "2.6666666666666667"),
        ("2", 3, "0.66666666666666666667"),
        ("123456789013", 2, "61728394506.50000000"),
        ("0.003", 2, "0.00150000000000000000"),
        ("0", 3, "0.00000000000000000000"),
        ("-3", 2, "-1.5000000000000000"),
        ("-8", 3, "-2.6666666666666667"),
        ("9999.9999", 7, "1428.5714142857142857"),
        ("1", 1, "1.00000000000000000000"),
        ("5", 10000, "0.00050000000000000000"),
        ("99999", 100000, "0.99999000000000000000"),
        (
            "123456789012345678901234567890.123",
            7,
            "17636684144620811271604938270.018",
        ),
        ("0.00000001", 3, "0.0000000033333333333333333333"),
        ("1.000", 4, "0.25000000000000000000"),
        ("-0.5", 3, "-0.16666666666666666667"),
        ("1e20", 3, "33333333333333333333"),
        ("12345678", 9999, "1234.6912691269126913"),
        ("0.00005", 1, "0.000050000000000000000000"),
        ("99999.99999", 99999, "1.00001000000000000000"),
        (
            "1.23456789012345678901234567890123456789",
            3,
            "0.41152263004115226300411522630041152263",
        ),
        ("NaN", 2, "NaN"),
        ("Infinity", 2, "Infinity"),
        ("-Infinity", 5, "-Infinity"),
    ];
    for &(sum, count, want) in cases {
        assert_eq!(n(sum).div_count(count).to_text(), want, "{sum} / {count}");
    }
}

#[test]
fn ordering_ignores_scale_and_places_specials() {
    let ascending = [
        "-Infinity",
        "-1e20",
        "-1.5",
        "-1.49",
        "-0.0001",
        "0",
        "0.00001",
        "1",
        "1.000001",
        "9999.9999",
        "10000",
        "1e20",
        "Infinity",
        "NaN",
    ];
    for (i, a) in ascending.iter().enumerate() {
        for (j, b) in ascending.iter().enumerate() {
            assert_eq!(n(a).compare(&n(b)), i.cmp(&j), "{a} vs {b}");
        }
    }
    assert_eq!(n("2.50").compare(&n("2.5")), Ordering::Equal);
}

#[test]
fn integers_convert_exactly() {
    for v in [
        0i128,
        1,
        -1,
        9999,
        10000,
        -10001,
        i128::from(i64::MAX),
        i128::from(i64::MIN),
    ] {
        let x = Numeric::from_i128(v);
        assert_eq!(x.to_text(), v.to_string());
        assert_eq!(x.to_i128(), Some(v));
    }
    assert_eq!(n("2.5").to_i128(), None);
    assert_eq!(n("2.000").to_i128(), Some(2));
    assert_eq!(n("0.1").to_f64(), 0.1);
}
