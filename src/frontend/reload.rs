//! Config reload (SIGHUP and the admin `RELOAD`): re-read the file, check that the new config
//! can replace the running one, and swap it in without dropping any client.
//!
//! What changes live: users and passwords (new logins), the admin credentials, pool sizes and
//! timeouts, limits, the pool mode, tables and schemes added or changed, shards appended
//! (with pools of their own), 2PC settings. What needs a restart, and is refused so the
//! running config stays whole: removing, renaming, reordering or re-pointing a shard (shard
//! positions are what sessions and bucket maps hold), changing a hash scheme's bucket count
//! or function, changing the catalog. TLS certificate and key files are re-read (a renewed
//! certificate takes effect for new connections). `listen` and `metrics_listen` are kept as
//! they were and reported as needing a restart. A bad file is refused and the old config stays.

use std::sync::Arc;

use super::auth::Credentials;
use super::{Proxy, Snapshot};
use crate::backend::ShardPool;
use crate::config::{self, Config, HashFunction, Scheme};
use crate::router::Router;

/// What a successful reload did, for the log and the admin client.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ReloadReport {
    pub shards_added: Vec<String>,
    /// Settings that changed in the file but keep their old value until a restart.
    pub restart_needed: Vec<String>,
}

/// Check that `new` can replace `old` in a running proxy; say what needs a restart.
pub fn compatible(old: &Config, new: &Config) -> Result<Vec<String>, String> {
    let file = new.source.display();
    for (i, o) in old.shards.iter().enumerate() {
        match new.shards.get(i) {
            None => {
                return Err(format!(
                    "{file}: shards: shard \"{}\" was removed; removing or reordering shards needs a restart",
                    o.name
                ))
            }
            Some(n) if n.name != o.name => {
                return Err(format!(
                    "{file}: shards[{i}]: was \"{}\", now \"{}\"; renaming or reordering shards needs a restart (new shards go at the end)",
                    o.name, n.name
                ))
            }
            Some(n) if n.target != o.target => {
                return Err(format!(
                    "{file}: shards.{}: url changed; pointing a shard elsewhere needs a restart",
                    o.name
                ))
            }
            Some(_) => {}
        }
    }
    if new.catalog != old.catalog {
        return Err(format!(
            "{file}: catalog: changed; moving the catalog needs a restart"
        ));
    }
    for (name, o) in &old.schemes {
        if let (Scheme::Hash(o), Some(Scheme::Hash(n))) = (o, new.schemes.get(name)) {
            if o.buckets != n.buckets || o.function != n.function {
                return Err(format!(
                    "{file}: schemes.{name}: buckets or function changed; that moves every row (use shardgate reshard)"
                ));
            }
        }
    }
    let mut restart = Vec::new();
    if new.listen != old.listen {
        restart.push("listen".to_string());
    }
    if new.metrics_listen != old.metrics_listen {
        restart.push("metrics_listen".to_string());
    }
    Ok(restart)
}

impl Proxy {
    /// Re-read the config file this proxy was started from and apply it.
    pub async fn reload_from_file(&self) -> Result<ReloadReport, String> {
        let path = self.config().source.clone();
        let new = config::load(&path).map_err(|e| e.to_string())?;
        self.reload(new).await
    }

    /// Apply `new` for new statements and logins; connected clients stay connected.
    pub async fn reload(&self, mut new: Config) -> Result<ReloadReport, String> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        let old = self.snapshot();
        let restart = compatible(&old.config, &new)?;
        // Kept as running until a restart.
        new.listen = old.config.listen;
        new.metrics_listen = old.config.metrics_listen;
        // Certificates are re-read on every reload (a renewed certificate at the same path
        // takes effect for new connections); files that cannot be used refuse the reload.
        let tls = match &new.tls {
            None => None,
            Some(t) => Some(Arc::new(super::startup::ClientTls {
                acceptor: crate::tls::acceptor(t)
                    .map_err(|e| format!("{}: {e}", new.source.display()))?,
                require: t.require,
            })),
        };
        let creds = Credentials::from_config(&new)?;
        let config = Arc::new(new);
        let router = Router::new(config.clone());
        // Live bucket maps come from the catalog: keep those of schemes already running,
        // load (or seed) those of new hash schemes.
        let live = old.router.bucket_maps();
        let mut missing = Vec::new();
        for (name, scheme) in &config.schemes {
            let Scheme::Hash(h) = scheme else { continue };
            if h.function != HashFunction::Postgres {
                continue;
            }
            match live.0.get(name) {
                Some(map) => router.set_bucket_map(name, map.as_ref().clone()),
                None => missing.push(name.clone()),
            }
        }
        let needs_directory = config
            .schemes
            .values()
            .any(|s| matches!(s, Scheme::Directory(_)));
        if !missing.is_empty() || (needs_directory && self.catalog().is_none()) {
            self.load_maps(&config, &router, &missing, needs_directory)
                .await?;
        }
        let mut pools = old.pools.clone();
        for p in &pools {
            p.reconfigure(config.pool.clone());
        }
        let mut added = Vec::new();
        for (i, s) in config.shards.iter().enumerate().skip(pools.len()) {
            pools.push(ShardPool::new(
                i,
                &s.name,
                s.target.clone(),
                config.pool.clone(),
            ));
            added.push(s.name.clone());
        }
        self.inner.creds.store(Arc::new(creds));
        self.inner.tls.store(tls);
        self.inner.state.store(Arc::new(Snapshot {
            config,
            router,
            pools,
        }));
        if let Ok(mut m) = self.inner.login_params.lock() {
            // The default shard may have changed: learn login parameters afresh.
            m.clear();
        }
        tracing::info!(shards_added = ?added, restart_needed = ?restart, "config reloaded");
        drop(_one_at_a_time);
        if let Some(catalog) = self.catalog() {
            // A reload that brought in the first scheme needing the catalog: this proxy must
            // now follow resharding too (a no-op when it already does).
            let cfg = self.config();
            let target = match &cfg.catalog {
                crate::config::CatalogRef::Shard(i) => cfg.shards[*i].target.clone(),
                crate::config::CatalogRef::Url(t) => t.clone(),
            };
            super::holds::start_sync(self, catalog.clone(), target).await;
        }
        Ok(ReloadReport {
            shards_added: added,
            restart_needed: restart,
        })
    }

    /// Connect the catalog if needed and install the live maps of `schemes` into `router`.
    async fn load_maps(
        &self,
        cfg: &Config,
        router: &Router,
        schemes: &[String],
        directory: bool,
    ) -> Result<(), String> {
        let catalog = self
            .catalog_for_twopc()
            .await
            .map_err(|e| format!("the catalog is needed for the new schemes: {}", e.message))?;
        for name in schemes {
            let Some(Scheme::Hash(h)) = cfg.schemes.get(name) else {
                continue;
            };
            let seed: Vec<String> = h.map.iter().map(|&s| cfg.shards[s].name.clone()).collect();
            let live = catalog
                .seed_bucket_map(name, &seed)
                .await
                .map_err(|e| format!("schemes.{name}: {e}"))?;
            let mut map = Vec::with_capacity(live.shards.len());
            for shard in &live.shards {
                map.push(cfg.shard_id(shard).ok_or_else(|| {
                    format!("schemes.{name}: the live bucket map names shard \"{shard}\", which is not in shards:")
                })?);
            }
            if map.len() != h.buckets as usize {
                return Err(format!(
                    "schemes.{name}: the live bucket map has {} buckets, the config says {}",
                    map.len(),
                    h.buckets
                ));
            }
            router.set_bucket_map(name, map);
        }
        if directory {
            self.ensure_directory_listener(cfg);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(extra_shard: bool, buckets: u32) -> Config {
        let mut yaml = String::from(
            "listen: 127.0.0.1:6432\nusers: [{ name: app, password: app }]\nshards:\n  - { name: s0, url: \"postgres://app:app@127.0.0.1:5433/app\" }\n  - { name: s1, url: \"postgres://app:app@127.0.0.1:5434/app\" }\n",
        );
        if extra_shard {
            yaml.push_str("  - { name: s2, url: \"postgres://app:app@127.0.0.1:5435/app\" }\n");
        }
        yaml.push_str(&format!(
            "schemes:\n  by_user: {{ type: hash, buckets: {buckets} }}\ntables:\n  users: {{ scheme: by_user, key: id }}\n"
        ));
        config::parse(&yaml, std::path::Path::new("x.yaml")).unwrap()
    }

    #[test]
    fn appending_a_shard_is_compatible() {
        assert_eq!(compatible(&cfg(false, 8), &cfg(true, 8)), Ok(vec![]));
    }

    #[test]
    fn removing_a_shard_or_changing_buckets_is_refused() {
        let e = compatible(&cfg(true, 8), &cfg(false, 8)).unwrap_err();
        assert!(e.contains("shard \"s2\" was removed"), "{e}");
        let e = compatible(&cfg(false, 8), &cfg(false, 16)).unwrap_err();
        assert!(e.contains("schemes.by_user"), "{e}");
    }

    #[test]
    fn listen_changes_need_a_restart() {
        let mut new = cfg(false, 8);
        new.listen = "127.0.0.1:7000".parse().unwrap();
        assert_eq!(compatible(&cfg(false, 8), &new), Ok(vec!["listen".into()]));
    }
}
