//! What an operator installs and calls beside the commands themselves:
//! `reconciler completions` and `reconciler man` (what the Debian package
//! ships, made the same way), and the CI recipe in `examples/ci/`, whose
//! every `reconciler` command line must parse with this binary's clap
//! definitions, and whose plan summary must render a real plan. The
//! package itself is tested on a fleet server (`fleet_package`).

use crate::common;

use std::path::Path;
use std::process::Command;

use clap::Parser as _;
use reconciler::cli::Cli;

fn run_ok(args: &[&str]) -> String {
    let out = common::reconciler().args(args).output().expect("run");
    assert!(
        out.status.success(),
        "reconciler {args:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn completions_are_scripts_of_each_shell_naming_every_command() {
    let bash = run_ok(&["completions", "bash"]);
    assert!(bash.contains("_reconciler()"), "{bash}");
    assert!(
        bash.contains("complete -F _reconciler")
            || bash.contains("complete -o bashdefault -o default -o nosort -F _reconciler"),
        "no `complete` line"
    );
    let zsh = run_ok(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef reconciler"), "{zsh}");
    let fish = run_ok(&["completions", "fish"]);
    assert!(fish.contains("complete -c reconciler"), "{fish}");
    for command in [
        "plan",
        "apply",
        "watch",
        "completions",
        "man",
        "deploy-token",
    ] {
        for (shell, script) in [("bash", &bash), ("zsh", &zsh), ("fish", &fish)] {
            assert!(script.contains(command), "{shell} lacks `{command}`");
        }
    }
    let wrong = common::reconciler()
        .args(["completions", "powershell"])
        .output()
        .expect("run");
    assert_eq!(
        wrong.status.code(),
        Some(2),
        "an unknown shell is a usage error"
    );
}

#[test]
fn man_writes_a_page_per_command_and_subcommand() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("man1");
    let printed = run_ok(&["man", "--out", &out.display().to_string()]);
    let mut pages: Vec<String> = std::fs::read_dir(&out)
        .expect("read dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    for page in [
        "reconciler.1",
        "reconciler-plan.1",
        "reconciler-watch.1",
        "reconciler-env-pull.1",
        "reconciler-completions.1",
        "reconciler-man.1",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page} in {pages:?}");
        assert!(printed.contains(page), "not reported: {page}\n{printed}");
    }
    assert!(!pages.iter().any(|p| p.contains("help")), "{pages:?}");
    let plan = std::fs::read_to_string(out.join("reconciler-plan.1")).expect("page");
    assert!(plan.contains("\n.TH reconciler-plan 1 "), "{plan}");
    assert!(plan.contains("detailed\\-exitcode"), "{plan}");
}

/// The `run:` scripts of every step of a GitHub Actions workflow.
fn run_scripts(workflow: &serde_yaml::Value) -> Vec<String> {
    let jobs = workflow["jobs"].as_mapping().expect("jobs");
    jobs.values()
        .flat_map(|job| job["steps"].as_sequence().cloned().unwrap_or_default())
        .filter_map(|step| step["run"].as_str().map(str::to_owned))
        .collect()
}

/// The `reconciler ...` command lines of a shell script, as argv: lines
/// joined at trailing backslashes, words split as the shell would for the
/// simple quoting these examples use, up to a redirection, pipe or `;`.
fn reconciler_commands(script: &str) -> Vec<Vec<String>> {
    let joined = script.replace("\\\n", " ");
    let mut commands = Vec::new();
    for line in joined.lines() {
        let line = line.trim();
        if !line.starts_with("reconciler ") {
            continue;
        }
        let mut words = Vec::new();
        let mut word = String::new();
        let mut in_word = false;
        let mut quote: Option<char> = None;
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), c) => word.push(c),
                (None, '"' | '\'') => {
                    quote = Some(c);
                    in_word = true;
                }
                (None, c) if c.is_whitespace() => {
                    if in_word {
                        words.push(std::mem::take(&mut word));
                        in_word = false;
                    }
                }
                (None, '>' | '|' | ';' | '&') => break,
                (None, c) => {
                    word.push(c);
                    in_word = true;
                }
            }
        }
        assert!(quote.is_none(), "unbalanced quotes in `{line}`");
        if in_word && !word.chars().all(|c| c.is_ascii_digit()) {
            words.push(word); // `2>` leaves a lone `2`: not an argument
        }
        commands.push(words);
    }
    commands
}

fn workflow(name: &str) -> serde_yaml::Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("examples/ci")
        .join(name);
    let text = std::fs::read_to_string(&path).expect("workflow");
    serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn the_ci_recipes_commands_parse_with_this_binarys_options() {
    let definitions = workflow("definitions-plan.yml");
    assert!(
        definitions["on"]["pull_request"].is_null()
            || definitions["on"]["pull_request"].is_mapping(),
        "runs on pull requests: {:?}",
        definitions["on"]
    );
    let commands: Vec<Vec<String>> = run_scripts(&definitions)
        .iter()
        .flat_map(|script| reconciler_commands(script))
        .collect();
    for argv in &commands {
        if let Err(e) = Cli::try_parse_from(argv) {
            panic!(
                "examples/ci/definitions-plan.yml: `{}` does not parse:\n{e}",
                argv.join(" ")
            );
        }
    }
    let has = |subcommand: &str, flags: &[&str]| {
        commands.iter().any(|argv| {
            argv.get(1).is_some_and(|s| s == subcommand)
                && flags.iter().all(|f| {
                    argv.windows(f.split(' ').count())
                        .any(|w| w.join(" ") == *f)
                })
        })
    };
    assert!(
        has("validate", &[]),
        "no `reconciler validate` in {commands:?}"
    );
    assert!(
        has("plan", &["--detailed-exitcode", "--format json"]),
        "no `reconciler plan --detailed-exitcode --format json` in {commands:?}"
    );

    let app = workflow("app-deploy.yml");
    let deploy = &app["jobs"]["deploy"];
    assert_eq!(
        deploy["needs"].as_str(),
        Some("test"),
        "deploys after the tests pass"
    );
    let step = &deploy["steps"][0];
    let token = step["env"]["TOKEN"].as_str().expect("TOKEN");
    assert!(
        token.starts_with("${{ secrets."),
        "the token comes from the CI's secrets: {token}"
    );
    let script = step["run"].as_str().expect("run");
    for needed in [
        "/v1/deploy\"",
        "Authorization: Bearer $TOKEN",
        "\\\"app\\\": \\\"$APP\\\"",
        "\\\"revision\\\": \\\"$GITHUB_SHA\\\"",
        ".status_url",
        // Every state the webhook ends in stops the loop: `live`, and
        // `failed`, `rolled-back` and `interrupted` by the catch-all.
        "running | guarding) ;;",
        "live)",
        "*)",
    ] {
        assert!(
            script.contains(needed),
            "the deploy step lacks `{needed}`:\n{script}"
        );
    }
}

#[test]
fn the_plan_summary_renders_a_plan_as_markdown() {
    // A real plan, as the renderer's snapshot has it.
    let snapshot =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(
            "src/plan/tests/snapshots/reconciler__plan__tests__rendering__json_rendering.snap",
        ))
        .expect("snapshot");
    let json = snapshot.splitn(3, "---\n").nth(2).expect("snapshot body");
    let dir = tempfile::tempdir().expect("tempdir");
    let plan = dir.path().join("plan.json");
    std::fs::write(&plan, json).expect("plan.json");
    let out = Command::new("jq")
        .arg("-r")
        .arg("-f")
        .arg(Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/ci/plan-summary.jq"))
        .arg(&plan)
        .output()
        .expect("jq (apt-get install jq; tests/run does)");
    assert!(
        out.status.success(),
        "jq: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let summary = String::from_utf8_lossy(&out.stdout);
    for line in [
        "| web-1 | 0 | 1 | 3 | nginx now, php8.2-fpm in window |  |",
        "| web-2 | 0 | 0 | 0 |  | **failed**: connection to `root@203.0.113.12:22` refused |",
        "<details><summary><code>update_file /etc/php/8.2/fpm/pool.d/shop.conf</code></summary>",
        "+pm.max_children = 20",
    ] {
        assert!(
            summary.lines().any(|l| l == line),
            "no line `{line}` in:\n{summary}"
        );
    }
}
