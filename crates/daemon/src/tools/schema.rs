//! The tool definitions the model sees (names and input schemas follow the
//! hosted `agent_toolset_20260401`).

use serde_json::json;

use super::ToolDefinition;

const BASH: &str = "Run a command in a persistent bash shell. The working directory, exported \
variables, functions and background jobs persist between calls; the shell starts in the session \
workspace. stdout and stderr are merged; stdin is /dev/null, so interactive programs won't work. \
Only the last 100 KiB of output is returned. Commands time out after timeout_ms (default \
120000 ms), which kills the shell and everything it started. Set restart to true to get a fresh \
shell.";

const READ: &str = "Read a text file from the workspace. Lines are numbered like `cat -n`. Use \
view_range [start, end] (1-indexed, inclusive; end -1 means to the end of the file) for large \
files; at most 256 KiB is returned per call. Paths are relative to the workspace.";

const WRITE: &str = "Create or overwrite a file in the workspace with the given content, creating \
parent directories as needed. Paths are relative to the workspace.";

const EDIT: &str = "Replace an exact string in a workspace file. old_string must match exactly \
once (include surrounding lines to make it unique) unless replace_all is true. Read the file \
first to copy the exact text, including indentation.";

const GLOB: &str = "Find files in the workspace whose path matches a glob pattern such as \
`**/*.rs` or `src/*.ts` (`*` doesn't cross `/`; `**` does). Paths are matched relative to `path` \
(default: the workspace root) and listed relative to the workspace, most recently modified \
first, at most 200. Files ignored by .gitignore and the .git directory are skipped.";

const GREP: &str = "Search file contents in the workspace with a regular expression (Rust regex \
syntax; use (?i) for case-insensitive). Returns matching lines as `path:line:text`, paths \
relative to the workspace. `path` may be a file or a directory (default: the workspace root). \
Binary files, .gitignored files and .git are skipped; output is capped at 100 KiB.";

const WEB_FETCH: &str = "Fetch a web page with an HTTP GET and return its content: HTML \
converted to Markdown, other text as it is. Follows up to 5 redirects. Only hosts the session's \
network policy allows can be reached, never loopback or private addresses; at most 5 MB is \
read, within 30 s.";

const WEB_SEARCH: &str = "Search the web and return the top results: title, URL and a short \
snippet each. Use it to find pages, then web_fetch to read one.";

pub fn definitions() -> Vec<ToolDefinition> {
    vec![
        ToolDefinition {
            name: "bash",
            description: BASH,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "command": {
                        "type": "string",
                        "description": "The bash command to run. May span multiple lines."
                    },
                    "restart": {
                        "type": "boolean",
                        "description": "Kill the current shell and start a fresh one (command may be omitted)."
                    },
                    "timeout_ms": {
                        "type": "integer",
                        "minimum": 0,
                        "description": "Timeout in milliseconds; 0 or absent means 120000."
                    }
                }
            }),
        },
        ToolDefinition {
            name: "read",
            description: READ,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "file_path": {
                        "type": "string",
                        "description": "Path of the file, relative to the workspace (or absolute inside it)."
                    },
                    "view_range": {
                        "type": "array",
                        "items": {"type": "integer"},
                        "minItems": 2,
                        "maxItems": 2,
                        "description": "[start, end] line numbers, 1-indexed and inclusive; end -1 reads to the end."
                    }
                },
                "required": ["file_path"]
            }),
        },
        ToolDefinition {
            name: "write",
            description: WRITE,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "file_path": {
                        "type": "string",
                        "description": "Path of the file, relative to the workspace (or absolute inside it)."
                    },
                    "content": {
                        "type": "string",
                        "description": "The complete new content of the file."
                    }
                },
                "required": ["file_path", "content"]
            }),
        },
        ToolDefinition {
            name: "edit",
            description: EDIT,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "file_path": {
                        "type": "string",
                        "description": "Path of the file, relative to the workspace (or absolute inside it)."
                    },
                    "old_string": {
                        "type": "string",
                        "description": "The exact text to replace."
                    },
                    "new_string": {
                        "type": "string",
                        "description": "The text to replace it with (must differ from old_string)."
                    },
                    "replace_all": {
                        "type": "boolean",
                        "description": "Replace every occurrence instead of requiring exactly one."
                    }
                },
                "required": ["file_path", "old_string", "new_string"]
            }),
        },
        ToolDefinition {
            name: "glob",
            description: GLOB,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "pattern": {
                        "type": "string",
                        "description": "Glob pattern, e.g. `**/*.rs`."
                    },
                    "path": {
                        "type": "string",
                        "description": "Directory to search in, relative to the workspace (default: the workspace root)."
                    }
                },
                "required": ["pattern"]
            }),
        },
        ToolDefinition {
            name: "grep",
            description: GREP,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "pattern": {
                        "type": "string",
                        "description": "Regular expression (Rust regex syntax)."
                    },
                    "path": {
                        "type": "string",
                        "description": "File or directory to search, relative to the workspace (default: the workspace root)."
                    }
                },
                "required": ["pattern"]
            }),
        },
        ToolDefinition {
            name: "web_fetch",
            description: WEB_FETCH,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "url": {
                        "type": "string",
                        "description": "The http:// or https:// URL to fetch."
                    }
                },
                "required": ["url"]
            }),
        },
        ToolDefinition {
            name: "web_search",
            description: WEB_SEARCH,
            input_schema: json!({
                "type": "object",
                "properties": {
                    "query": {
                        "type": "string",
                        "description": "What to search for, as you would type it into a search engine."
                    }
                },
                "required": ["query"]
            }),
        },
    ]
}
