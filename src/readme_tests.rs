//! The README's crate table names every member of the workspace, and
//! nothing else.

#[test]
fn the_crate_table_lists_every_workspace_member() {
    let readme = include_str!("../README.md");
    let manifest: toml::Table = include_str!("../Cargo.toml").parse().expect("Cargo.toml");
    let members: Vec<&str> = manifest["workspace"]["members"]
        .as_array()
        .expect("members")
        .iter()
        .filter_map(|m| m.as_str())
        .filter(|m| *m != ".")
        .collect();
    let rows: Vec<&str> = readme
        .lines()
        .filter(|l| l.starts_with("| `") && l.contains("/` (`keyshift-"))
        .collect();
    for member in &members {
        let row = format!("| `{member}/` (`keyshift-{member}`) |");
        assert!(
            rows.iter().any(|r| r.starts_with(&row)),
            "README.md's crate table has no row for {member}/"
        );
    }
    assert_eq!(rows.len(), members.len(), "crate rows: {rows:#?}");
}
