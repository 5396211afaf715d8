//! The environment layer as the session shell sees it: the variables that put the packages
//! an environment build installed (mounted at [`LAYER_MOUNT`]) ahead of the host's.

use tether_proto::environment::LAYER_MOUNT;

/// Variables a session's shell gets when it has a layer: its bin dirs first on PATH, and the
/// module paths of the languages whose packages live in it.
pub fn layer_env(env: &mut Vec<(String, String)>) {
    let path = env
        .iter()
        .find(|(k, _)| k == "PATH")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let mut libs = apt_lib_path();
    if let Some((_, v)) = env.iter().find(|(k, _)| k == "LD_LIBRARY_PATH")
        && !v.is_empty()
    {
        libs = format!("{libs}:{v}");
    }
    let l = LAYER_MOUNT;
    let vars = [
        (
            "PATH",
            format!(
                "{l}/bin:{l}/python/bin:{l}/node/node_modules/.bin:{l}/apt/usr/bin:{l}/apt/bin:{path}"
            ),
        ),
        ("LD_LIBRARY_PATH", libs),
        ("PYTHONPATH", format!("{l}/python")),
        ("NODE_PATH", format!("{l}/node/node_modules")),
        ("GEM_PATH", format!("{l}/gem")),
        ("TETHER_ENV_LAYER", l.to_string()),
    ];
    for (k, v) in vars {
        env.retain(|(n, _)| n != k);
        env.push((k.into(), v));
    }
}

/// The lib dirs of the apt packages unpacked into a layer, for LD_LIBRARY_PATH (the host's
/// own libraries are found as usual after these).
fn apt_lib_path() -> String {
    let l = LAYER_MOUNT;
    let triplet = format!("{}-linux-gnu", std::env::consts::ARCH);
    [
        format!("{l}/apt/usr/lib/{triplet}"),
        format!("{l}/apt/lib/{triplet}"),
        format!("{l}/apt/usr/lib"),
        format!("{l}/apt/lib"),
    ]
    .join(":")
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn layer_env_puts_layer_bins_first() {
        let mut env = vec![("PATH".to_string(), "/usr/bin".to_string())];
        layer_env(&mut env);
        let path = &env.iter().find(|(k, _)| k == "PATH").unwrap().1;
        assert!(path.starts_with(&format!("{LAYER_MOUNT}/bin:")), "{path}");
        assert!(path.ends_with(":/usr/bin"), "{path}");
        assert!(
            env.iter()
                .any(|(k, v)| k == "PYTHONPATH" && v.ends_with("/python"))
        );
        let libs = &env.iter().find(|(k, _)| k == "LD_LIBRARY_PATH").unwrap().1;
        assert!(
            libs.starts_with(&format!(
                "{LAYER_MOUNT}/apt/usr/lib/{}-linux-gnu:",
                std::env::consts::ARCH
            )),
            "{libs}"
        );
    }
}
