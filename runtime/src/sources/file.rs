//! File source: lines of text, JSON or CSV from a file or a directory, split by byte range across instances.

use super::{BadRecordPolicy, DeadLetters, Poll, Source, SourceContext, SourceReader};
use crate::error::{Result, RuntimeError};
use csv::ByteRecord;
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::{Path, PathBuf};

/// Size of the read buffer of each open file.
const READ_BUFFER: usize = 256 * 1024;

/// How the lines of a [`FileSource`] are decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Each line is one `String` record (with `str::lines` semantics: a final newline is
    /// optional, `\r\n` ends a line, an empty line is an empty record).
    TextLines,
    /// Each non-blank line is one JSON value.
    JsonLines,
    /// The first line of each file is the header naming the columns; each later non-blank
    /// line is one record. Quoted fields must not contain line breaks.
    Csv,
}

impl FileFormat {
    fn label(self) -> &'static str {
        match self {
            FileFormat::TextLines => "text lines",
            FileFormat::JsonLines => "json lines",
            FileFormat::Csv => "csv",
        }
    }
}

/// A source reading records from a file, or from every regular, non-hidden file directly
/// inside a directory (in name order).
///
/// The files are treated as one concatenated sequence of bytes, split into equal byte
/// ranges, one per instance; each line is read by the instance whose range holds its first
/// byte. Malformed lines follow the [`BadRecordPolicy`] (default: skip and count).
///
/// ```text
/// env.source(FileSource::json_lines::<Order>(env.arg("input")))
/// env.source(FileSource::csv::<Trade>("data/trades").on_bad_record(BadRecordPolicy::Fail))
/// ```
pub struct FileSource<T> {
    path: PathBuf,
    format: FileFormat,
    policy: BadRecordPolicy,
    _item: PhantomData<fn() -> T>,
}

impl FileSource<String> {
    /// Read every line as a `String`.
    pub fn text_lines(path: impl Into<PathBuf>) -> FileSource<String> {
        FileSource::with_format(path.into(), FileFormat::TextLines)
    }

    /// Read every non-blank line as one JSON value of type `T`:
    /// `FileSource::json_lines::<Order>(path)`.
    pub fn json_lines<T: DeserializeOwned>(path: impl Into<PathBuf>) -> FileSource<T> {
        FileSource::with_format(path.into(), FileFormat::JsonLines)
    }

    /// Read CSV: the first line of each file is the header, every later non-blank line one
    /// record of type `T`, matched to `T`'s fields by column name: `FileSource::csv::<Trade>(path)`.
    pub fn csv<T: DeserializeOwned>(path: impl Into<PathBuf>) -> FileSource<T> {
        FileSource::with_format(path.into(), FileFormat::Csv)
    }
}

impl<T> FileSource<T> {
    fn with_format(path: PathBuf, format: FileFormat) -> Self {
        FileSource {
            path,
            format,
            policy: BadRecordPolicy::default(),
            _item: PhantomData,
        }
    }

    /// What to do with a line that cannot be decoded (default: [`BadRecordPolicy::Skip`]).
    pub fn on_bad_record(mut self, policy: BadRecordPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The file or directory read.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// How lines are decoded.
    pub fn format(&self) -> FileFormat {
        self.format
    }

    /// What happens to lines that cannot be decoded.
    pub fn bad_record_policy(&self) -> &BadRecordPolicy {
        &self.policy
    }
}

impl<T> Clone for FileSource<T> {
    fn clone(&self) -> Self {
        FileSource {
            path: self.path.clone(),
            format: self.format,
            policy: self.policy.clone(),
            _item: PhantomData,
        }
    }
}

impl<T> fmt::Debug for FileSource<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FileSource")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("policy", &self.policy)
            .finish()
    }
}

impl<T: crate::data::Data> Source for FileSource<T> {
    type Item = T;
    type Reader = FileSourceReader<T>;

    fn describe(&self) -> String {
        format!("file {} ({})", self.path.display(), self.format.label())
    }

    fn is_bounded(&self) -> bool {
        true
    }

    fn open(&self, ctx: &SourceContext) -> Result<Self::Reader> {
        let op = &ctx.operator;
        if ctx.parallelism == 0 || ctx.instance >= ctx.parallelism {
            return Err(RuntimeError::internal(format!(
                "file source `{op}`: opened as instance {} of {}",
                ctx.instance, ctx.parallelism
            )));
        }
        let files = list_files(&self.path, op)?;
        if files.is_empty() {
            tracing::warn!(operator = %op, path = %self.path.display(), "file source: the directory holds no files to read");
        }
        let slices = plan(files.clone(), ctx.instance, ctx.parallelism);
        for slice in &slices {
            if let Err(e) = File::open(&slice.path) {
                return Err(RuntimeError::user(format!(
                    "file source `{op}`: cannot open {}: {e}; check the path and its permissions",
                    slice.path.display()
                )));
            }
        }
        Ok(FileSourceReader {
            operator: ctx.operator.clone(),
            instance: ctx.instance,
            parallelism: ctx.parallelism,
            files,
            format: self.format,
            policy: self.policy.clone(),
            slices,
            next_slice: 0,
            current: None,
            line: Vec::with_capacity(4096),
            csv: CsvLineParser::new(),
            dead_letter: DeadLetters::default(),
            records: 0,
            bad: 0,
            finished: false,
            _item: PhantomData,
        })
    }
}

/// A file to read and its size when the source was opened.
#[derive(Debug, Clone)]
struct InputFile {
    path: PathBuf,
    len: u64,
}

/// The files behind `path`: the file itself, or the regular, non-hidden files directly inside
/// the directory, sorted by name.
fn list_files(path: &Path, op: &str) -> Result<Vec<InputFile>> {
    let not_accessible = |e: io::Error| {
        if e.kind() == io::ErrorKind::NotFound {
            RuntimeError::user(format!(
                "file source `{op}`: {} does not exist; pass an existing file or directory",
                path.display()
            ))
        } else {
            RuntimeError::user(format!(
                "file source `{op}`: cannot access {}: {e}; check the path and its permissions",
                path.display()
            ))
        }
    };
    let meta = fs::metadata(path).map_err(not_accessible)?;
    if meta.is_file() {
        return Ok(vec![InputFile {
            path: path.to_path_buf(),
            len: meta.len(),
        }]);
    }
    if !meta.is_dir() {
        return Err(RuntimeError::user(format!(
            "file source `{op}`: {} is neither a regular file nor a directory; pass a file or a directory of files",
            path.display()
        )));
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(not_accessible)? {
        let entry = entry.map_err(not_accessible)?;
        if entry.file_name().as_encoded_bytes().starts_with(b".") {
            continue;
        }
        let file = entry.path();
        // Follows symbolic links: a link to a regular file is read.
        let meta = fs::metadata(&file).map_err(|e| {
            RuntimeError::user(format!(
                "file source `{op}`: cannot access {}: {e}; check the file and its permissions",
                file.display()
            ))
        })?;
        if meta.is_file() {
            files.push((
                entry.file_name(),
                InputFile {
                    path: file,
                    len: meta.len(),
                },
            ));
        }
    }
    files.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(files.into_iter().map(|(_, f)| f).collect())
}

/// The lines of one file an instance reads: those whose first byte lies in `start..end`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Slice {
    path: PathBuf,
    start: u64,
    end: u64,
}

/// `total * num / den` without overflow.
fn mul_div(total: u64, num: usize, den: usize) -> u64 {
    // The quotient is at most `total`, so it fits.
    (u128::from(total) * num as u128 / den as u128) as u64
}

/// The slices of instance `instance` of `parallelism`: its byte range
/// `[i*S/p, (i+1)*S/p)` of the concatenated files, cut along file boundaries.
fn plan(files: Vec<InputFile>, instance: usize, parallelism: usize) -> Vec<Slice> {
    let total: u64 = files.iter().map(|f| f.len).sum();
    let lo = mul_div(total, instance, parallelism);
    let hi = mul_div(total, instance + 1, parallelism);
    let mut slices = Vec::new();
    let mut base = 0u64;
    for file in files {
        let (first, last) = (base, base + file.len);
        base = last;
        if file.len == 0 || last <= lo || first >= hi {
            continue;
        }
        slices.push(Slice {
            path: file.path,
            start: lo.max(first) - first,
            end: hi.min(last) - first,
        });
    }
    slices
}

/// Parses one CSV line into a reused record (also used by the Kafka source, one message per
/// line).
pub(crate) struct CsvLineParser {
    core: csv_core::Reader,
    out: Vec<u8>,
    ends: Vec<usize>,
    record: ByteRecord,
}

impl CsvLineParser {
    pub(crate) fn new() -> Self {
        // Only `\n` ends a record; lines arrive one at a time without it.
        let core = csv_core::ReaderBuilder::new()
            .terminator(csv_core::Terminator::Any(b'\n'))
            .build();
        CsvLineParser {
            core,
            out: vec![0; 1024],
            ends: vec![0; 64],
            record: ByteRecord::new(),
        }
    }

    /// Split `line` into fields (never fails: malformed quoting parses as best it can).
    pub(crate) fn parse(&mut self, line: &[u8]) -> &ByteRecord {
        use csv_core::ReadRecordResult;
        self.core.reset();
        let mut input = line;
        let (mut nout, mut nend) = (0, 0);
        loop {
            let (res, nin, o, e) =
                self.core
                    .read_record(input, &mut self.out[nout..], &mut self.ends[nend..]);
            input = &input[nin..];
            nout += o;
            nend += e;
            match res {
                // An empty input next tells the parser the record is complete.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let len = self.out.len() * 2;
                    self.out.resize(len, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let len = self.ends.len() * 2;
                    self.ends.resize(len, 0);
                }
                ReadRecordResult::Record | ReadRecordResult::End => break,
            }
        }
        self.record.clear();
        let mut start = 0;
        for &end in &self.ends[..nend] {
            self.record.push_field(&self.out[start..end]);
            start = end;
        }
        &self.record
    }
}

/// What one line decoded to.
enum Decoded<T> {
    Record(T),
    Blank,
    Bad(String),
}

fn is_blank(line: &[u8]) -> bool {
    line.iter().all(u8::is_ascii_whitespace)
}

fn strip_bom(line: &[u8]) -> &[u8] {
    line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line)
}

/// Decode one line (without its line ending).
#[inline]
fn decode<T: DeserializeOwned>(
    format: FileFormat,
    line: &[u8],
    file_start: bool,
    csv: &mut CsvLineParser,
    header: Option<&ByteRecord>,
) -> Decoded<T> {
    match format {
        FileFormat::TextLines => match std::str::from_utf8(line) {
            // `T` is `String` here: this moves the string into the record.
            Ok(text) => match T::deserialize(serde::de::value::StringDeserializer::<
                serde::de::value::Error,
            >::new(text.to_owned()))
            {
                Ok(record) => Decoded::Record(record),
                Err(e) => Decoded::Bad(e.to_string()),
            },
            Err(e) => Decoded::Bad(format!("invalid UTF-8: {e}")),
        },
        FileFormat::JsonLines => {
            let line = if file_start { strip_bom(line) } else { line };
            if is_blank(line) {
                return Decoded::Blank;
            }
            match serde_json::from_slice(line) {
                Ok(record) => Decoded::Record(record),
                Err(e) => Decoded::Bad(format!("invalid JSON: {e}")),
            }
        }
        FileFormat::Csv => {
            if is_blank(line) {
                return Decoded::Blank;
            }
            let Some(header) = header else {
                return Decoded::Bad("no CSV header was read".to_string());
            };
            let record = csv.parse(line);
            if record.len() != header.len() {
                return Decoded::Bad(format!(
                    "expected {} fields as in the header, found {}",
                    header.len(),
                    record.len()
                ));
            }
            match record.deserialize(Some(header)) {
                Ok(record) => Decoded::Record(record),
                Err(e) => Decoded::Bad(csv_error(&e, header)),
            }
        }
    }
}

/// A CSV decode error naming the column.
fn csv_error(e: &csv::Error, header: &ByteRecord) -> String {
    if let csv::ErrorKind::Deserialize { err, .. } = e.kind() {
        if let Some(field) = err.field() {
            let name = usize::try_from(field)
                .ok()
                .and_then(|i| header.get(i))
                .unwrap_or_default();
            return format!(
                "column `{}` (field {}): {}",
                String::from_utf8_lossy(name),
                field + 1,
                err.kind()
            );
        }
        return format!("invalid CSV record: {}", err.kind());
    }
    format!("invalid CSV record: {e}")
}

/// The part of `line` before its line ending. Like `str::lines`, `\r` is stripped only
/// before `\n`; `strip_cr` also strips a final bare `\r`.
fn content(line: &[u8], strip_cr: bool) -> &[u8] {
    match line.strip_suffix(b"\n") {
        Some(l) => l.strip_suffix(b"\r").unwrap_or(l),
        None if strip_cr => line.strip_suffix(b"\r").unwrap_or(line),
        None => line,
    }
}

/// One record of a dead-letter file.
#[derive(Serialize)]
struct DeadLetterEntry<'a> {
    source: &'a str,
    file: &'a str,
    line: u64,
    error: &'a str,
    raw: &'a str,
}

/// The file being read.
struct OpenSlice {
    /// Index into the reader's slices.
    slice: usize,
    reader: BufReader<File>,
    /// Offset of the next line start in the file.
    pos: u64,
    /// Lines starting before this offset are not read.
    end: u64,
    /// Offset of the first line read in this slice.
    first_pos: u64,
    /// Its 1-based line number, if known (computed on demand otherwise).
    first_line: Option<u64>,
    /// Lines read from `first_pos` on.
    lines_read: u64,
    /// The header (CSV).
    header: Option<ByteRecord>,
}

/// An open [`FileSource`] instance.
pub struct FileSourceReader<T> {
    operator: String,
    instance: usize,
    parallelism: usize,
    /// Every file of the source (all instances'), for re-splitting on a rescale.
    files: Vec<InputFile>,
    format: FileFormat,
    policy: BadRecordPolicy,
    slices: Vec<Slice>,
    next_slice: usize,
    current: Option<OpenSlice>,
    /// The line being decoded (reused).
    line: Vec<u8>,
    csv: CsvLineParser,
    dead_letter: DeadLetters,
    records: u64,
    bad: u64,
    finished: bool,
    _item: PhantomData<fn() -> T>,
}

impl<T> FileSourceReader<T> {
    fn read_error(&self, path: &Path, pos: u64, e: &io::Error) -> RuntimeError {
        RuntimeError::external(format!(
            "file source `{}`: cannot read {} at byte {pos}: {e}; check that the file is readable and unchanged while the job runs",
            self.operator,
            path.display()
        ))
    }

    /// Open slice `index`: read the CSV header, and skip to the first line starting in range.
    fn open_slice(&mut self, index: usize) -> Result<OpenSlice> {
        let slice = &self.slices[index];
        let file = File::open(&slice.path).map_err(|e| self.read_error(&slice.path, 0, &e))?;
        let mut reader = BufReader::with_capacity(READ_BUFFER, file);
        let (mut pos, mut first_line, mut header) = (0u64, Some(1), None);
        if self.format == FileFormat::Csv {
            self.line.clear();
            let n = reader
                .read_until(b'\n', &mut self.line)
                .map_err(|e| self.read_error(&slice.path, 0, &e))?;
            let names = strip_bom(content(&self.line, true));
            if is_blank(names) {
                return Err(RuntimeError::user(format!(
                    "file source `{}`: {} line 1 is empty, but the first line of a CSV file must be the header naming the columns; fix the file",
                    self.operator,
                    slice.path.display()
                )));
            }
            header = Some(self.csv.parse(names).clone());
            pos = n as u64;
            first_line = Some(2);
        }
        // `pos` is a line start and no line starts in `1..pos`; otherwise find the first line
        // start at or after `start`: just after the first `\n` at or after `start - 1`.
        if slice.start > pos {
            let at = slice.start - 1;
            let skipped = reader
                .seek(SeekFrom::Start(at))
                .and_then(|_| reader.skip_until(b'\n'))
                .map_err(|e| self.read_error(&slice.path, at, &e))?;
            pos = at + skipped as u64;
            first_line = None;
        }
        Ok(OpenSlice {
            slice: index,
            reader,
            pos,
            end: slice.end,
            first_pos: pos,
            first_line,
            lines_read: 0,
            header,
        })
    }

    /// The 1-based line number of the line just read; may rescan the file's prefix.
    fn current_line_number(&mut self) -> Result<u64> {
        let Some(cur) = self.current.as_mut() else {
            return Err(RuntimeError::internal(format!(
                "file source `{}`: no file is open",
                self.operator
            )));
        };
        let first = match cur.first_line {
            Some(n) => n,
            None => {
                let path = &self.slices[cur.slice].path;
                let rescan = || -> io::Result<u64> {
                    let mut prefix = File::open(path)?.take(cur.first_pos);
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut newlines = 0u64;
                    loop {
                        let n = prefix.read(&mut buf)?;
                        if n == 0 {
                            return Ok(newlines);
                        }
                        newlines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
                    }
                };
                let n = rescan().map_err(|e| {
                    RuntimeError::external(format!(
                        "file source `{}`: cannot read {} to find a line number: {e}; check that the file is readable",
                        self.operator,
                        path.display()
                    ))
                })? + 1;
                cur.first_line = Some(n);
                n
            }
        };
        Ok(first + cur.lines_read - 1)
    }

    /// Apply the bad-record policy to the line in `self.line`.
    fn bad_record(&mut self, error: String) -> Result<()> {
        let slice = self.current.as_ref().map_or(0, |c| c.slice);
        match &self.policy {
            BadRecordPolicy::Fail => {
                let line = self.current_line_number()?;
                Err(RuntimeError::user(format!(
                    "file source `{}`: cannot decode {} line {line}: {error}; fix the input or use .on_bad_record(BadRecordPolicy::Skip) to skip bad records",
                    self.operator,
                    self.slices[slice].path.display()
                )))
            }
            BadRecordPolicy::Skip => {
                if self.bad == 0 {
                    let line = self.current_line_number()?;
                    tracing::warn!(
                        operator = %self.operator,
                        instance = self.instance,
                        file = %self.slices[slice].path.display(),
                        line,
                        error = %error,
                        "file source: skipping bad records (the first one is this one)"
                    );
                }
                self.bad += 1;
                Ok(())
            }
            BadRecordPolicy::DeadLetter(dir) => {
                let dir = dir.clone();
                let line = self.current_line_number()?;
                self.dead_letter(&dir, slice, line, &error)?;
                self.bad += 1;
                Ok(())
            }
        }
    }

    /// Append the line in `self.line` to this instance's dead-letter file.
    fn dead_letter(&mut self, dir: &Path, slice: usize, line: u64, error: &str) -> Result<()> {
        let file = self.slices[slice].path.to_string_lossy();
        let raw = String::from_utf8_lossy(content(&self.line, false));
        let entry = DeadLetterEntry {
            source: &self.operator,
            file: &file,
            line,
            error,
            raw: &raw,
        };
        let what = format!("file source `{}`", self.operator);
        self.dead_letter
            .write(&what, dir, &self.operator, self.instance, &entry)
    }

    fn finish(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        if self.bad > 0 {
            let policy = match &self.policy {
                BadRecordPolicy::DeadLetter(dir) => {
                    format!("sent to dead-letter files in {}", dir.display())
                }
                _ => "skipped".to_string(),
            };
            tracing::warn!(operator = %self.operator, instance = self.instance, records = self.records, bad_records = self.bad, "file source finished; bad records were {policy}");
        } else {
            tracing::debug!(operator = %self.operator, instance = self.instance, records = self.records, "file source finished");
        }
    }
}

impl<T: DeserializeOwned + 'static> SourceReader for FileSourceReader<T> {
    type Item = T;

    fn poll<F: FnMut(T)>(&mut self, budget: usize, mut out: F) -> Result<Poll> {
        let mut handled = 0;
        while handled < budget {
            let Some(cur) = self.current.as_mut() else {
                if self.next_slice == self.slices.len() {
                    self.finish();
                    return Ok(Poll::Done);
                }
                let next = self.open_slice(self.next_slice)?;
                self.current = Some(next);
                self.next_slice += 1;
                continue;
            };
            if cur.pos >= cur.end {
                self.current = None;
                continue;
            }
            self.line.clear();
            let n = match cur.reader.read_until(b'\n', &mut self.line) {
                Ok(n) => n,
                Err(e) => {
                    let (slice, pos) = (cur.slice, cur.pos);
                    return Err(self.read_error(&self.slices[slice].path, pos, &e));
                }
            };
            if n == 0 {
                // The file is shorter than when the source was opened.
                self.current = None;
                continue;
            }
            let file_start = cur.pos == 0;
            cur.pos += n as u64;
            cur.lines_read += 1;
            handled += 1;
            let line = content(&self.line, self.format != FileFormat::TextLines);
            match decode::<T>(
                self.format,
                line,
                file_start,
                &mut self.csv,
                cur.header.as_ref(),
            ) {
                Decoded::Record(record) => {
                    self.records += 1;
                    out(record);
                }
                Decoded::Blank => {}
                Decoded::Bad(error) => self.bad_record(error)?,
            }
        }
        Ok(Poll::More)
    }

    fn bad_records(&self) -> u64 {
        self.bad
    }

    fn progress(&self) -> (u64, Option<u64>) {
        (self.records, None)
    }

    fn position(&self) -> Option<Vec<u8>> {
        let p = FilePosition {
            slice: self.current.as_ref().map(|c| (c.slice, c.pos)),
            next_slice: self.next_slice,
            records: self.records,
            bad: self.bad,
        };
        crate::checkpoint::encode("the file source's position", &p).ok()
    }

    fn rescale(&mut self, positions: &[Option<Vec<u8>>]) -> Result<()> {
        let old = positions.len();
        let mut left = Vec::new();
        for (i, p) in positions.iter().enumerate() {
            let Some(p) = p else {
                return Err(RuntimeError::user(format!(
                    "file source `{}`: the savepoint holds no position of its instance {i} of {old}; it is incomplete — take it again",
                    self.operator
                )));
            };
            left.extend(self.left_at(i, old, p)?);
        }
        self.slices = share(&left, self.instance, self.parallelism);
        self.next_slice = 0;
        self.current = None;
        tracing::info!(
            operator = %self.operator,
            instance = self.instance,
            from = old,
            to = self.parallelism,
            bytes = self.slices.iter().map(|s| s.end - s.start).sum::<u64>(),
            "file source re-split the input left in the savepoint"
        );
        Ok(())
    }

    fn seek(&mut self, position: &[u8]) -> Result<()> {
        let p: FilePosition = crate::checkpoint::decode("the file source's position", position)?;
        let changed = || {
            RuntimeError::user(format!(
                "file source `{}`: the checkpoint's position does not fit the input files; they changed since the checkpoint was taken — restore with the same input, or start without state (run --restore none)",
                self.operator
            ))
        };
        if p.next_slice > self.slices.len() || p.slice.is_some_and(|(s, _)| s >= self.slices.len())
        {
            return Err(changed());
        }
        self.current = None;
        if let Some((slice, pos)) = p.slice {
            let mut cur = self.open_slice(slice)?;
            if pos > cur.pos {
                cur.reader
                    .seek(SeekFrom::Start(pos))
                    .map_err(|e| self.read_error(&self.slices[slice].path, pos, &e))?;
                cur.pos = pos;
                cur.first_pos = pos;
                cur.first_line = None;
            }
            self.current = Some(cur);
        }
        self.next_slice = p.next_slice;
        self.records = p.records;
        self.bad = p.bad;
        Ok(())
    }
}

impl<T> FileSourceReader<T> {
    /// What instance `instance` of `parallelism` had left at `position`: the rest of its
    /// open slice and the slices it had not opened.
    fn left_at(&self, instance: usize, parallelism: usize, position: &[u8]) -> Result<Vec<Slice>> {
        let p: FilePosition = crate::checkpoint::decode("the file source's position", position)?;
        let slices = plan(self.files.clone(), instance, parallelism);
        if p.next_slice > slices.len() || p.slice.is_some_and(|(s, _)| s >= slices.len()) {
            return Err(RuntimeError::user(format!(
                "file source `{}`: the savepoint's positions do not fit the input files; they changed since it was taken — restore with the same input, or start without the savepoint",
                self.operator
            )));
        }
        let mut left = Vec::new();
        if let Some((s, pos)) = p.slice {
            left.push(Slice {
                path: slices[s].path.clone(),
                start: pos.max(slices[s].start),
                end: slices[s].end,
            });
        }
        left.extend(slices.into_iter().skip(p.next_slice));
        left.retain(|s| s.start < s.end);
        Ok(left)
    }
}

/// Instance `instance` of `parallelism`'s share of `left`: the byte range
/// `[i*S/p, (i+1)*S/p)` of the ranges laid end to end (a line belongs to the range its
/// first byte is in, as with [`plan`]).
fn share(left: &[Slice], instance: usize, parallelism: usize) -> Vec<Slice> {
    let total: u64 = left.iter().map(|s| s.end - s.start).sum();
    let lo = mul_div(total, instance, parallelism);
    let hi = mul_div(total, instance + 1, parallelism);
    let mut out = Vec::new();
    let mut base = 0u64;
    for s in left {
        let len = s.end - s.start;
        let (first, last) = (base, base + len);
        base = last;
        if last <= lo || first >= hi {
            continue;
        }
        out.push(Slice {
            path: s.path.clone(),
            start: s.start + (lo.max(first) - first),
            end: s.start + (hi.min(last) - first),
        });
    }
    out
}

/// Where a file source instance is, as stored in a checkpoint.
#[derive(Serialize, serde::Deserialize)]
struct FilePosition {
    /// The open slice and the offset of its next line.
    slice: Option<(usize, u64)>,
    next_slice: usize,
    records: u64,
    bad: u64,
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::error::ErrorDomain;
    use serde::Deserialize;

    fn ctx(instance: usize, parallelism: usize) -> SourceContext {
        SourceContext {
            job: "test".into(),
            operator: "orders".into(),
            instance,
            parallelism,
        }
    }

    fn read_instance<T: crate::data::Data>(
        src: &FileSource<T>,
        instance: usize,
        parallelism: usize,
        budget: usize,
    ) -> Result<(Vec<T>, u64)> {
        let mut reader = src.open(&ctx(instance, parallelism))?;
        let mut items = Vec::new();
        loop {
            let before = items.len();
            let state = reader.poll(budget, |x| items.push(x))?;
            assert!(items.len() - before <= budget);
            match state {
                Poll::Done => break,
                Poll::More => {}
                Poll::Idle => panic!("a file source is never idle"),
            }
        }
        assert_eq!(reader.progress(), (items.len() as u64, None));
        Ok((items, reader.bad_records()))
    }

    /// Records of all instances, instance by instance (which is input order).
    fn read_all<T: crate::data::Data>(
        src: &FileSource<T>,
        parallelism: usize,
        budget: usize,
    ) -> Vec<T> {
        (0..parallelism)
            .flat_map(|i| read_instance(src, i, parallelism, budget).unwrap().0)
            .collect()
    }

    /// A savepoint's positions, taken with 3 instances at different points (one not
    /// started, one part way, one done), re-split over 1, 2 and 5 instances: every line is
    /// read exactly once, before or after.
    #[test]
    fn a_rescaled_restore_reads_what_was_left_exactly_once() {
        let (dir, mut expected) = text_dir();
        expected.sort();
        let src = FileSource::text_lines(dir.path());
        let old = 3;
        let mut before = Vec::new();
        let mut positions = Vec::new();
        for (i, budget) in [(0, 0), (1, 3), (2, usize::MAX)] {
            let mut r = src.open(&ctx(i, old)).unwrap();
            if budget > 0 {
                loop {
                    let n = before.len();
                    let st = r.poll(budget.min(2), |x: String| before.push(x)).unwrap();
                    if st == Poll::Done || before.len() - n == 0 || budget != usize::MAX {
                        break;
                    }
                }
            }
            positions.push(r.position());
        }
        assert!(!before.is_empty());
        for new in [1, 2, 5] {
            let mut all = before.clone();
            for i in 0..new {
                let mut r = src.open(&ctx(i, new)).unwrap();
                r.rescale(&positions).unwrap();
                while r.poll(7, |x: String| all.push(x)).unwrap() != Poll::Done {}
            }
            all.sort();
            assert_eq!(all, expected, "rescaled from {old} to {new}");
        }
    }

    fn write(dir: &Path, name: &str, content: impl AsRef<[u8]>) -> PathBuf {
        let path = dir.join(name);
        fs::write(&path, content).unwrap();
        path
    }

    const TEXT_FILES: [(&str, &str); 5] = [
        (
            "a.txt",
            "first\nsecond line is longer\nx\n\n\nafter two empty lines\n",
        ),
        (
            "b.txt",
            "crlf one\r\ncrlf two\r\n\r\nbare cr inside\r stays\n",
        ),
        ("c.txt", "no trailing newline\nlast"),
        ("d.txt", ""),
        ("e.txt", "\n\nends with a bare cr\r"),
    ];

    fn text_dir() -> (tempfile::TempDir, Vec<String>) {
        let dir = tempfile::tempdir().unwrap();
        let long = "y".repeat(3000);
        let mut expected = Vec::new();
        // Written in reverse to check that files are read in name order.
        for (name, content) in TEXT_FILES.iter().rev() {
            write(dir.path(), name, content);
        }
        write(dir.path(), "f.txt", format!("{long}\nshort\n{long}\n"));
        write(dir.path(), ".hidden", "never read\n");
        fs::create_dir(dir.path().join("sub")).unwrap();
        write(&dir.path().join("sub"), "nested.txt", "never read\n");
        for (_, content) in TEXT_FILES {
            expected.extend(content.lines().map(String::from));
        }
        expected.extend([long.clone(), "short".into(), long]);
        (dir, expected)
    }

    #[test]
    fn text_lines_read_every_line_exactly_once_for_any_parallelism() {
        let (dir, expected) = text_dir();
        let src = FileSource::text_lines(dir.path());
        for p in 1..=7 {
            for budget in [1, 3, 1000] {
                assert_eq!(
                    read_all(&src, p, budget),
                    expected,
                    "parallelism {p}, budget {budget}"
                );
            }
        }
        // Many more instances than lines: most read nothing.
        assert_eq!(read_all(&src, 64, 2), expected);
    }

    #[test]
    fn single_file_split_matches_str_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut content = String::new();
        for i in 0..200 {
            content.push_str(&"z".repeat(i * 7 % 23));
            content.push_str(&format!("{i}"));
            content.push_str(if i % 5 == 0 { "\r\n" } else { "\n" });
            if i % 11 == 0 {
                content.push('\n');
            }
        }
        content.push_str("tail without newline");
        let path = write(dir.path(), "one.txt", &content);
        let expected: Vec<String> = content.lines().map(String::from).collect();
        let src = FileSource::text_lines(&path);
        for p in 1..=13 {
            assert_eq!(read_all(&src, p, 7), expected, "parallelism {p}");
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Order {
        id: u64,
        item: String,
        amount: f64,
    }

    #[test]
    fn json_lines_split_and_skip_blank_lines() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        let mut id = 0;
        for (f, lines) in [(0, 17), (1, 1), (2, 40)] {
            let mut content = String::new();
            if f == 0 {
                content.push('\u{feff}');
            }
            for j in 0..lines {
                let order = Order {
                    id,
                    item: "w".repeat(j % 9),
                    amount: id as f64 * 1.5,
                };
                content.push_str(&serde_json::to_string(&order).unwrap());
                content.push_str(if j % 4 == 1 { "\r\n" } else { "\n" });
                if j % 6 == 0 {
                    content.push_str("  \n\n");
                }
                expected.push(order);
                id += 1;
            }
            if f == 2 {
                content.pop();
            }
            write(dir.path(), &format!("part-{f}.jsonl"), content);
        }
        let src = FileSource::json_lines::<Order>(dir.path()).on_bad_record(BadRecordPolicy::Fail);
        for p in 1..=7 {
            assert_eq!(read_all(&src, p, 4), expected, "parallelism {p}");
        }
    }

    #[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
    struct Trade {
        symbol: String,
        price: f64,
        qty: u32,
    }

    #[test]
    fn csv_reads_header_per_file_and_splits() {
        let dir = tempfile::tempdir().unwrap();
        let mut expected = Vec::new();
        let mut a = String::from("symbol,price,qty\r\n");
        for i in 0..25u32 {
            let t = Trade {
                symbol: format!("S{}", "x".repeat(i as usize % 5)),
                price: f64::from(i) + 0.25,
                qty: i,
            };
            a.push_str(&format!("{},{},{}\r\n", t.symbol, t.price, t.qty));
            if i % 7 == 3 {
                a.push_str("\r\n");
            }
            expected.push(t);
        }
        // Another column order and a quoted field with a comma; no trailing newline.
        let mut b = String::from("\u{feff}qty,symbol,price\n");
        for i in 0..30u32 {
            let t = Trade {
                symbol: format!("Q,{i}"),
                price: f64::from(i) * 2.0,
                qty: 100 + i,
            };
            b.push_str(&format!("{},\"{}\",{}\n", t.qty, t.symbol, t.price));
            expected.push(t);
        }
        b.pop();
        write(dir.path(), "a.csv", a);
        write(dir.path(), "b.csv", b);
        // A file with only a header.
        write(dir.path(), "c.csv", "symbol,price,qty\n");
        let src = FileSource::csv::<Trade>(dir.path()).on_bad_record(BadRecordPolicy::Fail);
        for p in 1..=7 {
            assert_eq!(read_all(&src, p, 5), expected, "parallelism {p}");
        }
        assert_eq!(read_all(&src, 200, 5), expected);
    }

    #[test]
    fn fail_policy_names_source_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        write(
            dir.path(),
            "a.jsonl",
            "{\"id\":1,\"item\":\"a\",\"amount\":1}\n".repeat(50),
        );
        let mut b = "{\"id\":2,\"item\":\"b\",\"amount\":2}\n".repeat(30);
        b.push_str("{\"id\":3,\"item\":\"b\",\"amount\":\"lots\"}\n");
        b.push_str(&"{\"id\":2,\"item\":\"b\",\"amount\":2}\n".repeat(5));
        let bad_file = write(dir.path(), "b.jsonl", b);
        let src = FileSource::json_lines::<Order>(dir.path()).on_bad_record(BadRecordPolicy::Fail);
        for p in 1..=5 {
            let errors: Vec<RuntimeError> = (0..p)
                .filter_map(|i| read_instance(&src, i, p, 16).err())
                .collect();
            assert_eq!(
                errors.len(),
                1,
                "parallelism {p}: exactly one instance reads the bad line"
            );
            let err = &errors[0];
            assert_eq!(err.domain, ErrorDomain::User);
            let expected = format!("{} line 31:", bad_file.display());
            assert!(err.message.contains("`orders`"), "{}", err.message);
            assert!(
                err.message.contains(&expected),
                "parallelism {p}: {}",
                err.message
            );
            assert!(
                err.message.contains("invalid type: string \"lots\""),
                "{}",
                err.message
            );
            assert!(
                err.message
                    .contains(".on_bad_record(BadRecordPolicy::Skip)"),
                "{}",
                err.message
            );
            assert!(!err.message.contains('\n'));
        }
    }

    #[test]
    fn skip_policy_counts_bad_records() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "orders.jsonl",
            "{\"id\":1,\"item\":\"a\",\"amount\":1}\nnot json\n{\"id\":2}\n\n{\"id\":3,\"item\":\"c\",\"amount\":3}\n",
        );
        let src = FileSource::json_lines::<Order>(&path);
        assert_eq!(src.bad_record_policy(), &BadRecordPolicy::Skip);
        let (items, bad) = read_instance(&src, 0, 1, 100).unwrap();
        assert_eq!(items.iter().map(|o| o.id).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(bad, 2);
        let total: u64 = (0..3)
            .map(|i| read_instance(&src, i, 3, 100).unwrap().1)
            .sum();
        assert_eq!(total, 2);
    }

    #[test]
    fn dead_letter_policy_writes_json_records() {
        let dir = tempfile::tempdir().unwrap();
        let dead = dir.path().join("dead");
        let input = dir.path().join("in");
        fs::create_dir(&input).unwrap();
        let good = "{\"id\":1,\"item\":\"a\",\"amount\":1}\n";
        let path = write(
            &input,
            "x.jsonl",
            format!("{}{{oops\r\n{}[1,2]", good.repeat(20), good.repeat(3)),
        );
        let src = FileSource::json_lines::<Order>(&input)
            .on_bad_record(BadRecordPolicy::DeadLetter(dead.clone()));
        let (items, bad) = read_instance(&src, 1, 2, 100).unwrap();
        assert!(!items.is_empty());
        assert_eq!(bad, 2);
        let text = fs::read_to_string(dead.join("dead-letter-orders-1.jsonl")).unwrap();
        let entries: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0]["source"], "orders");
        assert_eq!(entries[0]["file"], path.to_string_lossy().as_ref());
        assert_eq!(entries[0]["line"], 21);
        assert_eq!(entries[0]["raw"], "{oops");
        assert!(entries[0]["error"]
            .as_str()
            .unwrap()
            .starts_with("invalid JSON"));
        assert_eq!(entries[1]["line"], 25);
        assert_eq!(entries[1]["raw"], "[1,2]");
        // Instance 0 had no bad records and created no file.
        let (_, bad0) = read_instance(&src, 0, 2, 100).unwrap();
        assert_eq!(bad0, 0);
        assert!(!dead.join("dead-letter-orders-0.jsonl").exists());
    }

    #[test]
    fn invalid_utf8_text_is_a_bad_record() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.txt", b"ok\n\xff\xfe\nstill ok\n");
        let (items, bad) = read_instance(&FileSource::text_lines(&path), 0, 1, 10).unwrap();
        assert_eq!(items, ["ok", "still ok"]);
        assert_eq!(bad, 1);
        let err = read_instance(
            &FileSource::text_lines(&path).on_bad_record(BadRecordPolicy::Fail),
            0,
            1,
            10,
        )
        .unwrap_err();
        assert!(
            err.message.contains("line 2: invalid UTF-8"),
            "{}",
            err.message
        );
    }

    #[test]
    fn csv_errors_name_the_column_or_field_count() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(
            dir.path(),
            "t.csv",
            "symbol,price,qty\nA,1.5,3\nB,cheap,4\nC,2\nD,2,5\n",
        );
        let src = FileSource::csv::<Trade>(&path)
            .on_bad_record(BadRecordPolicy::DeadLetter(dir.path().join("dl")));
        let (items, bad) = read_instance(&src, 0, 1, 10).unwrap();
        assert_eq!(
            items.iter().map(|t| t.symbol.as_str()).collect::<Vec<_>>(),
            ["A", "D"]
        );
        assert_eq!(bad, 2);
        let text = fs::read_to_string(dir.path().join("dl/dead-letter-orders-0.jsonl")).unwrap();
        let entries: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(entries[0]["line"], 3);
        assert!(
            entries[0]["error"]
                .as_str()
                .unwrap()
                .starts_with("column `price` (field 2): "),
            "{}",
            entries[0]["error"]
        );
        assert_eq!(entries[1]["line"], 4);
        assert_eq!(
            entries[1]["error"],
            "expected 3 fields as in the header, found 2"
        );
    }

    #[test]
    fn csv_without_header_is_a_user_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(dir.path(), "t.csv", "\nA,1.5,3\n");
        let err = read_instance(&FileSource::csv::<Trade>(&path), 0, 1, 10).unwrap_err();
        assert_eq!(err.domain, ErrorDomain::User);
        assert!(err.message.contains("line 1 is empty"), "{}", err.message);
    }

    #[test]
    fn missing_path_fails_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.jsonl");
        let err = FileSource::json_lines::<Order>(&missing)
            .open(&ctx(0, 1))
            .err()
            .unwrap();
        assert_eq!(err.domain, ErrorDomain::User);
        assert!(
            err.message.contains(&missing.display().to_string()),
            "{}",
            err.message
        );
        assert!(err.message.contains("does not exist"), "{}", err.message);
    }

    #[test]
    fn empty_directory_reads_nothing() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), ".only-hidden", "x\n");
        let (items, bad) = read_instance(&FileSource::text_lines(dir.path()), 0, 1, 10).unwrap();
        assert!(items.is_empty());
        assert_eq!(bad, 0);
    }

    #[test]
    fn plan_covers_the_bytes_once() {
        let files = || {
            vec![
                InputFile {
                    path: "a".into(),
                    len: 10,
                },
                InputFile {
                    path: "b".into(),
                    len: 0,
                },
                InputFile {
                    path: "c".into(),
                    len: 5,
                },
            ]
        };
        assert_eq!(
            plan(files(), 0, 1),
            [
                Slice {
                    path: "a".into(),
                    start: 0,
                    end: 10
                },
                Slice {
                    path: "c".into(),
                    start: 0,
                    end: 5
                }
            ]
        );
        assert_eq!(
            plan(files(), 0, 2),
            [Slice {
                path: "a".into(),
                start: 0,
                end: 7
            }]
        );
        assert_eq!(
            plan(files(), 1, 2),
            [
                Slice {
                    path: "a".into(),
                    start: 7,
                    end: 10
                },
                Slice {
                    path: "c".into(),
                    start: 0,
                    end: 5
                }
            ]
        );
        assert_eq!(plan(files(), 0, 30), []);
    }

    #[test]
    fn describe_and_accessors() {
        let src = FileSource::json_lines::<Order>("data/orders.jsonl");
        assert_eq!(src.describe(), "file data/orders.jsonl (json lines)");
        assert!(src.is_bounded());
        assert_eq!(src.format(), FileFormat::JsonLines);
        assert_eq!(src.path(), Path::new("data/orders.jsonl"));
        assert_eq!(
            FileSource::text_lines("in").describe(),
            "file in (text lines)"
        );
        assert_eq!(
            FileSource::csv::<Trade>("t.csv").describe(),
            "file t.csv (csv)"
        );
        let typed: FileSource<Trade> = FileSource::csv("t.csv");
        assert_eq!(typed.format(), FileFormat::Csv);
    }
}
