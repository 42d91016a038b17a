//! The limits of SPEC 11: a fan-out statement costs one unit per shard it touches.
//!
//! `max_shards_per_query` caps one statement's cost; `fanout_budget_per_minute` gives each
//! user a token bucket holding at most a minute's budget, refilled continuously. Only
//! statements over more than one shard are charged: a single-shard statement costs nothing
//! (the budget is for fan-out, the expensive kind). A rejection is SQLSTATE 53400 naming the
//! limit, the cost and the budget.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use crate::config::LimitsConfig;
use crate::protocol::{sqlstate, PgError};
use crate::telemetry::Limit;

/// Every user's token bucket.
#[derive(Default)]
pub struct Budgets {
    users: Mutex<HashMap<String, Bucket>>,
}

struct Bucket {
    tokens: f64,
    at: Instant,
}

impl Budgets {
    /// Admit a statement touching `shards` shards for `user`, or say which limit refuses it.
    pub fn admit(
        &self,
        user: &str,
        shards: usize,
        limits: &LimitsConfig,
    ) -> Result<(), (Limit, PgError)> {
        if shards <= 1 {
            return Ok(());
        }
        let cost = shards as f64;
        let max = limits.max_shards_per_query;
        if max > 0 && shards > max as usize {
            return Err((
                Limit::MaxShardsPerQuery,
                PgError::error(
                    sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
                    format!(
                        "statement touches {shards} shards, more than limits.max_shards_per_query = {max}"
                    ),
                )
                .with_hint("Add the shard key to the statement's WHERE clause, or raise the limit."),
            ));
        }
        let budget = limits.fanout_budget_per_minute;
        if budget == 0 {
            return Ok(());
        }
        let capacity = budget as f64;
        let now = Instant::now();
        let Ok(mut users) = self.users.lock() else {
            return Ok(());
        };
        let b = users.entry(user.to_owned()).or_insert(Bucket {
            tokens: capacity,
            at: now,
        });
        let refill = now.duration_since(b.at).as_secs_f64() * capacity / 60.0;
        b.tokens = (b.tokens + refill).min(capacity);
        b.at = now;
        if b.tokens >= cost {
            b.tokens -= cost;
            return Ok(());
        }
        let left = b.tokens.floor();
        Err((
            Limit::FanoutBudget,
            PgError::error(
                sqlstate::CONFIGURATION_LIMIT_EXCEEDED,
                format!(
                    "fan-out budget of user \"{user}\" exhausted: statement costs {shards} shard-statements, {left} of limits.fanout_budget_per_minute = {budget} left"
                ),
            )
            .with_hint("The budget refills continuously over a minute; retry later or route by the shard key."),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: u32, budget: u32) -> LimitsConfig {
        LimitsConfig {
            max_shards_per_query: max,
            fanout_budget_per_minute: budget,
            max_merge_rows: 1000,
            max_message_size: 1 << 20,
        }
    }

    #[test]
    fn single_shard_statements_are_free() {
        let b = Budgets::default();
        for _ in 0..100 {
            assert!(b.admit("u", 1, &limits(1, 1)).is_ok());
        }
    }

    #[test]
    fn max_shards_per_query_names_cost_and_limit() {
        let b = Budgets::default();
        assert!(b.admit("u", 2, &limits(2, 0)).is_ok());
        let (l, e) = b.admit("u", 3, &limits(2, 0)).unwrap_err();
        assert_eq!(l, Limit::MaxShardsPerQuery);
        assert_eq!(e.code, "53400");
        assert!(
            e.message.contains("3 shards") && e.message.contains("= 2"),
            "{}",
            e.message
        );
    }

    #[test]
    fn budget_is_per_user_and_runs_out() {
        let b = Budgets::default();
        let l = limits(0, 10);
        assert!(b.admit("a", 4, &l).is_ok());
        assert!(b.admit("a", 4, &l).is_ok());
        let (which, e) = b.admit("a", 4, &l).unwrap_err();
        assert_eq!(which, Limit::FanoutBudget);
        assert!(
            e.message.contains("costs 4") && e.message.contains("= 10"),
            "{}",
            e.message
        );
        // Another user has a budget of their own.
        assert!(b.admit("b", 4, &l).is_ok());
    }
}
