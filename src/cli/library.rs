//! The shipped policy library, built into the binary so `init` can write it
//! anywhere. A test keeps this list equal to `policies/`.

/// `(file name, contents)` of every file in `policies/`.
pub const FILES: &[(&str, &str)] = &[
    (
        "claude_code.rego",
        include_str!("../../policies/claude_code.rego"),
    ),
    (
        "claude_code_test.rego",
        include_str!("../../policies/claude_code_test.rego"),
    ),
    ("data.json", include_str!("../../policies/data.json")),
    ("egress.rego", include_str!("../../policies/egress.rego")),
    (
        "egress_test.rego",
        include_str!("../../policies/egress_test.rego"),
    ),
    (
        "filesystem.rego",
        include_str!("../../policies/filesystem.rego"),
    ),
    (
        "filesystem_test.rego",
        include_str!("../../policies/filesystem_test.rego"),
    ),
    ("main.rego", include_str!("../../policies/main.rego")),
    (
        "main_test.rego",
        include_str!("../../policies/main_test.rego"),
    ),
    (
        "ratelimit.rego",
        include_str!("../../policies/ratelimit.rego"),
    ),
    (
        "ratelimit_test.rego",
        include_str!("../../policies/ratelimit_test.rego"),
    ),
    (
        "responses.rego",
        include_str!("../../policies/responses.rego"),
    ),
    (
        "responses_test.rego",
        include_str!("../../policies/responses_test.rego"),
    ),
    ("secrets.rego", include_str!("../../policies/secrets.rego")),
    (
        "secrets_test.rego",
        include_str!("../../policies/secrets_test.rego"),
    ),
    (
        "server_requests.rego",
        include_str!("../../policies/server_requests.rego"),
    ),
    (
        "server_requests_test.rego",
        include_str!("../../policies/server_requests_test.rego"),
    ),
    ("shell.rego", include_str!("../../policies/shell.rego")),
    (
        "shell_test.rego",
        include_str!("../../policies/shell_test.rego"),
    ),
    (
        "timewindow.rego",
        include_str!("../../policies/timewindow.rego"),
    ),
    (
        "timewindow_test.rego",
        include_str!("../../policies/timewindow_test.rego"),
    ),
];

#[cfg(test)]
mod tests {
    /// A file added to `policies/` must be added here too (and vice versa).
    #[test]
    fn the_built_in_library_is_the_policies_directory() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/policies");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let built_in: Vec<String> = super::FILES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(built_in, on_disk);
        for (name, text) in super::FILES {
            assert_eq!(
                std::fs::read_to_string(format!("{dir}/{name}")).unwrap(),
                *text
            );
        }
    }
}
