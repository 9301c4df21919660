//! The INI importer is total and its output is a config the gate loads: whatever bytes a
//! `Config.ini` holds, `import` refuses the file or prints TOML that the gate's own loader
//! parses, naming a LoginSrv or DBServer, and that validates unless the file itself made the
//! gate link to its own listener.
use std::path::Path;

use logingate::config::Config;
use logingate::import_ini;

/// The property, for one input; panics when it does not hold.
pub fn check(data: &[u8]) {
    let data = &data[..data.len().min(import_ini::MAX_INI_BYTES)];
    let Ok(toml) = import_ini::import(data) else {
        return;
    };
    let config = match Config::from_toml(&toml, Path::new("imported")) {
        Ok(c) => c,
        Err(e) => panic!("imported TOML does not load: {e}\n{toml}"),
    };
    assert!(!config.server.addr.is_empty(), "no server.addr:\n{toml}");
    if let Err(e) = config.validate() {
        let e = e.to_string();
        assert!(
            e.contains("`server.addr`") && e.contains("own listener"),
            "imported config is invalid: {e}\n{toml}"
        );
    }
}
