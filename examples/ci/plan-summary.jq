# The job summary (Markdown) of `reconciler plan --format json`
# (schemas/plan.schema.json, format_version 1):
#   jq -r -f plan-summary.jq plan.json >> "$GITHUB_STEP_SUMMARY"
# A table of what changes per server, then each server's changes with
# their diffs folded away.

def count(kinds): [.changes[] | select(.kind | IN(kinds[]))] | length;
def reload: "\(.label) \(if .when == "now" then "now" else "in window" end)";
# A server's file may hold backticks: the fence is longer than any run of them.
def fence: ([scan("`+") | length] | max // 0) as $n
  | ("`" * ([3, $n + 1] | max)) as $f
  | "\($f)diff\n\(.)\n\($f)";
# Table cells: no pipe or line break of a message may end one.
def cell: gsub("\\|"; "\\|") | gsub("\n"; " ");

"## reconciler plan",
"",
(if .format_version != 1 then "**unknown plan format \(.format_version)**" else empty end),
"| server | create | update | remove | reloads | |",
"|---|---:|---:|---:|---|---|",
(.hosts[] |
  "| \(.server | cell) | \(count(["create_user", "create_directory", "create_file"])) | \(count(["join_group", "update_directory", "update_file"])) | \(count(["remove_file"])) | \([.reloads[] | reload] | join(", ")) | \(if .error then "**failed**: \(.error.message | cell)" else "" end) |"),
"",
(.hosts[] | select((.changes | length) > 0 or .error or ((.warnings // []) | length) > 0) |
  "### \(.server)",
  "",
  (if .error then "**failed**: \(.error.message)\(if .error.hint then " (hint: \(.error.hint))" else "" end)\n" else empty end),
  ((.warnings // [])[] | "> warning: \(.)"),
  (.changes[] |
    if .diff then
      "<details><summary><code>\(.kind) \(.path)</code></summary>\n\n\(.diff | fence)\n\n</details>"
    else
      "- `\(.kind) \(.path // .user)`"
    end),
  "")
