//! What the config's types cannot say: at least one source and route, unique names, known
//! sources in `from`, every number in its range, connectors this build has.

use std::collections::HashSet;
use std::path::Path;

use super::{Config, ConfigError, SourceConfig, bounds};

pub(super) fn validate(path: &Path, config: &Config) -> Result<(), ConfigError> {
    if config.sources.is_empty() {
        return Err(ConfigError::at(
            path,
            "sources",
            "expected at least one source",
        ));
    }
    if config.routes.is_empty() {
        return Err(ConfigError::at(
            path,
            "routes",
            "expected at least one route",
        ));
    }
    let mut names = HashSet::new();
    let mut stdin_count = 0;
    for (i, s) in config.sources.iter().enumerate() {
        check_name(path, &format!("sources[{i}].name"), s.name())?;
        if !names.insert(s.name()) {
            return Err(ConfigError::at(
                path,
                format!("sources[{i}].name"),
                format!("duplicate source name {:?}", s.name()),
            ));
        }
        if let Some(feature) = s.spec().missing_feature() {
            return Err(ConfigError::at(
                path,
                format!("sources[{i}].type"),
                format!("this build has no {feature} source; rebuild with `--features {feature}`"),
            ));
        }
        if let Err(e) = s.spec().check() {
            return Err(ConfigError::at(path, format!("sources[{i}].{}", e.0), e.1));
        }
        if matches!(s, SourceConfig::Stdin(_)) {
            stdin_count += 1;
            if stdin_count > 1 {
                return Err(ConfigError::at(
                    path,
                    format!("sources[{i}]"),
                    "only one stdin source can exist",
                ));
            }
        }
    }
    bounds::check(config).map_err(|(key, message)| ConfigError::at(path, key, message))?;
    let admin = &config.admin;
    if admin.enabled {
        let listen = admin.listen.unwrap_or(super::AdminConfig::DEFAULT_LISTEN);
        if !listen.ip().is_loopback() && admin.effective_token().is_none() {
            return Err(ConfigError::at(
                path,
                "admin.token",
                format!(
                    "the admin server listens on {listen}, beyond this machine: set admin.token (or SWITCHYARD_ADMIN_TOKEN), or listen on 127.0.0.1"
                ),
            ));
        }
    }
    if let Some(tls) = &config.http.tls {
        crate::sources::webhook::tls_acceptor(tls)
            .map_err(|(key, message)| ConfigError::at(path, format!("http.{key}"), message))?;
    }
    let e = &config.engine;
    if e.min_consumers > e.max_consumers {
        return Err(ConfigError::at(
            path,
            "engine.min_consumers",
            format!(
                "expected at most engine.max_consumers ({}), got {}",
                e.max_consumers, e.min_consumers
            ),
        ));
    }
    let known = config.source_names();
    let mut route_names = HashSet::new();
    for (i, r) in config.routes.iter().enumerate() {
        check_name(path, &format!("routes[{i}].name"), &r.name)?;
        if !route_names.insert(r.name.as_str()) {
            return Err(ConfigError::at(
                path,
                format!("routes[{i}].name"),
                format!("duplicate route name {:?}", r.name),
            ));
        }
        for (j, from) in r.from.iter().enumerate() {
            if !known.contains(&from.as_str()) {
                return Err(ConfigError::at(
                    path,
                    format!("routes[{i}].from[{j}]"),
                    format!(
                        "unknown source {from:?}; expected one of: {}",
                        known.join(", ")
                    ),
                ));
            }
        }
    }
    Ok(())
}

fn check_name(path: &Path, key: &str, name: &str) -> Result<(), ConfigError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::at(
            path,
            key,
            format!("expected a name of letters, digits, '-', '_' or '.', got {name:?}"),
        ))
    }
}
