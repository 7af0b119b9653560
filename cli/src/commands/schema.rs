//! `gpuplace schema`.

use gpuplace::schema::Format;

use crate::output::print;

/// The library's formats, then the service's.
fn formats() -> Vec<Format> {
    let mut all = gpuplace::schema::formats();
    all.extend(gpuplace_serve::schema::formats());
    all
}

fn format(name: &str) -> Option<Format> {
    formats().into_iter().find(|f| f.name == name)
}

pub fn run(name: Option<&str>) -> anyhow::Result<()> {
    match name {
        None => {
            let mut text = String::from("JSON Schema of each file format (gpuplace schema NAME prints one):\n");
            for f in formats() {
                text.push_str(&format!("  {:<18} {}\n", f.name, f.used_by));
            }
            print(&text)
        }
        Some(name) => {
            let found = format(name).ok_or_else(|| {
                let names: Vec<&str> = formats().iter().map(|f| f.name).collect();
                gpuplace::InputError::new(
                    "command line",
                    "schema",
                    "NAME",
                    format!("no format is named `{name}`: one of {}", names.join(", ")),
                )
            })?;
            print(&(serde_json::to_string_pretty(&found.schema)? + "\n"))
        }
    }
}
