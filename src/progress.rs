//! The one way the binary makes a progress bar, so every command follows the same rule: a bar
//! on stderr when stderr is a terminal and `--quiet` is not given, nothing otherwise (a log
//! gets lines from the commands that print them instead).

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// True when a bar would be drawn: stderr is a terminal and not `--quiet`.
fn shown(quiet: bool) -> bool {
    !quiet && std::io::stderr().is_terminal()
}

/// True when progress goes to a log as lines instead: stderr is not a terminal, and not
/// `--quiet`.
pub fn lines(quiet: bool) -> bool {
    !quiet && !std::io::stderr().is_terminal()
}

/// A bar of `total` steps drawn with `template` (indicatif's syntax), or a hidden one.
pub fn bar(total: u64, template: &str, quiet: bool) -> ProgressBar {
    let bar = if shown(quiet) {
        ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr())
    } else {
        ProgressBar::hidden()
    };
    bar.set_style(
        ProgressStyle::with_template(template)
            .expect("the binary's templates are valid")
            .progress_chars("=> "),
    );
    bar
}
