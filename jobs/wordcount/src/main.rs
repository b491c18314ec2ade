//! Word count: text lines in, a running count per word out.
//!
//! ```text
//! cargo run --release -p wordcount -- run --workers 4 \
//!     --arg input=jobs/wordcount/data/sample.txt --arg output=/tmp/wordcount
//! ```

use weir::prelude::*;

/// Lower-cased words of a line; anything that is not a letter or digit separates words.
fn words(line: String) -> Vec<(String, u64)> {
    line.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(|w| (w.to_lowercase(), 1))
        .collect()
}

#[weir::job(name = "wordcount")]
fn pipeline(env: &mut Env) {
    env.source(FileSource::text_lines(env.arg("input")))
        .name("lines")
        .flat_map(words)
        .name("tokenize")
        .key_by(|(word, _)| word.clone())
        .reduce(|(word, a), (_, b)| (word, a + b))
        .name("count")
        .sink(FileSink::json_lines(env.arg("output")))
        .name("counts");
}
