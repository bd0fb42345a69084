//! Any text a definition may hold reads back, from the rendered file,
//! as exactly that text: no extra section, directive or expansion.

use proptest::prelude::*;

use super::super::parse_back;
use super::*;
use crate::definitions::values::IniValue;

/// Strings of the characters config syntaxes treat specially, and any
/// other printable text; no control characters (validation refuses
/// those, see `control_characters_are_refused`).
fn hostile() -> impl Strategy<Value = String> {
    let special = prop::sample::select(vec![
        "'",
        "\"",
        "$",
        "${HOME}",
        "%",
        "%(ENV_X)s",
        ";",
        " ;",
        " #",
        "#",
        "\\",
        "[",
        "]",
        "[program:pwn]",
        "=",
        ":",
        "`",
        "$(id)",
        " ",
        "  ",
        "{",
        "}",
        "*",
        "~",
        "é",
        "€",
    ]);
    let plain = "[ -~]{0,4}";
    prop::collection::vec(prop_oneof![special.prop_map(str::to_owned), plain], 1..12)
        .prop_map(|parts| parts.concat())
        .prop_filter("a command is not blank", |s| !s.trim().is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn a_worker_command_reaches_sh_unchanged(command in hostile()) {
        let mut defs = fleet();
        let shop = defs.apps.iter_mut().find(|a| a.name.as_str() == "shop").expect("shop");
        shop.servers[1].workers[0].command = command.clone();
        let units = units(&defs, "jobs-1");
        let conf = &file(&units, "/etc/supervisor/conf.d/shop.conf").content;
        let sections = parse_back::supervisor_sections(conf).map_err(TestCaseError::fail)?;
        let names: Vec<&str> = sections.keys().map(String::as_str).collect();
        prop_assert_eq!(names, ["program:shop-default", "program:shop-reports"]);
        // The groups an apply may update are read from these files: no
        // command names one.
        let groups: Vec<String> = crate::units::kinds::supervisor::groups_in(conf).into_iter().collect();
        prop_assert_eq!(groups, ["shop-default", "shop-reports"]);
        let line = &sections["program:shop-default"]["command"];
        let expanded = parse_back::supervisor_expand(line).map_err(TestCaseError::fail)?;
        let argv = parse_back::shlex_split(&expanded).map_err(TestCaseError::fail)?;
        let script = format!("{}{command}", escape::shell_prefix(&command));
        prop_assert_eq!(argv, vec!["/bin/sh".to_owned(), "-c".into(), script]);
    }

    #[test]
    fn php_ini_text_reads_back_unchanged(value in hostile()) {
        let mut defs = fleet();
        let cluster = &mut defs.clusters[0];
        cluster.php_ini.clear();
        cluster.php_ini.insert("x.y".into(), IniValue::String(value.clone()));
        cluster.sessions.save_path = Some(value.clone());
        let units = units(&defs, "web-1");
        for sapi in ["cli", "fpm"] {
            let ini = &file(&units, &format!("/etc/php/8.2/{sapi}/conf.d/99-reconciler.ini")).content;
            let directives = parse_back::php_ini(ini).map_err(TestCaseError::fail)?;
            prop_assert_eq!(&directives["x.y"], &value);
            prop_assert_eq!(&directives["session.save_path"], &value);
            let unexpected: Vec<&String> = directives
                .keys()
                .filter(|k| !(k.starts_with("session.") || k.starts_with("redis.")
                    || ["x.y", "memory_limit", "max_execution_time", "post_max_size", "upload_max_filesize",
                      "opcache.validate_permission", "opcache.restrict_api"].contains(&k.as_str())))
                .collect();
            prop_assert!(unexpected.is_empty(), "{:?}", unexpected);
        }
    }
}

#[test]
fn the_models_catch_what_escaping_prevents() {
    // Without escaping, these would be misread: the models must see it.
    let comment = parse_back::supervisor_sections("[p]\ncommand=a ; b\n").expect("parses");
    assert_eq!(comment["p"]["command"], "a");
    assert!(parse_back::supervisor_expand("100%").is_err());
    assert!(parse_back::php_ini("a = \"${HOME}\"\n").is_err());
    let injected = parse_back::supervisor_sections("[p]\ncommand=x\n[program:pwn]\ncommand=y\n")
        .expect("parses");
    assert_eq!(injected.len(), 2);
}
