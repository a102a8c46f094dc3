//! The message grammar: command code, fixed fields, identified fields, written with nom.
//!
//! ```text
//! message          = command-code fixed-field* identified-field*
//! command-code     = 2 bytes
//! fixed-field      = exactly WIDTH bytes
//! identified-field = field-id field-value ["|"]
//! field-id         = 2 bytes
//! field-value      = *(any byte but "|")
//! ```
//! Empty segments (`||`) and segments shorter than a field id are skipped: they carry nothing.

use nom::IResult;

/// The two-byte command code.
pub(crate) fn command_code(input: &[u8]) -> IResult<&[u8], [u8; 2]> {
    match input.split_first_chunk::<2>() {
        Some((code, rest)) => Ok((rest, *code)),
        None => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Eof))),
    }
}

/// One fixed field of `width` bytes. (A plain split: nom's `take` costs more than the split.)
#[inline]
pub(crate) fn fixed_field(input: &[u8], width: usize) -> IResult<&[u8], &[u8]> {
    match input.split_at_checked(width) {
        Some((field, rest)) => Ok((rest, field)),
        None => Err(nom::Err::Error(nom::error::Error::new(input, nom::error::ErrorKind::Eof))),
    }
}

/// One `|`-terminated segment (the delimiter is optional on the last one). Fields are short,
/// so a plain scan beats a vectorised search, whose set-up costs more than the scan itself.
#[inline]
fn segment(input: &[u8]) -> (&[u8], &[u8]) {
    match input.iter().position(|&b| b == b'|') {
        Some(i) => (input.get(i + 1..).unwrap_or_default(), input.get(..i).unwrap_or_default()),
        None => (&[], input),
    }
}

/// A parsed identified field: where it starts, its id and its raw value.
pub(crate) struct IdentifiedField<'a> {
    pub offset: usize,
    pub id: [u8; 2],
    pub value: &'a [u8],
}

/// The identified fields that follow the fixed part, which ended at byte `offset` of the frame.
pub(crate) fn identified_fields(input: &[u8], offset: usize) -> IdentifiedFields<'_> {
    IdentifiedFields { input, offset }
}

/// Iterator over identified fields; see [`identified_fields`].
pub(crate) struct IdentifiedFields<'a> {
    input: &'a [u8],
    offset: usize,
}

impl<'a> Iterator for IdentifiedFields<'a> {
    type Item = IdentifiedField<'a>;

    #[inline]
    fn next(&mut self) -> Option<IdentifiedField<'a>> {
        while !self.input.is_empty() {
            let before = self.input.len();
            let (rest, seg) = segment(self.input);
            let at = self.offset;
            self.offset += before - rest.len();
            self.input = rest;
            if let [a, b, value @ ..] = seg {
                return Some(IdentifiedField { offset: at, id: [*a, *b], value });
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_split_with_offsets_and_a_missing_last_delimiter() {
        let got: Vec<_> = identified_fields(b"AOMAIN|AC||X|AD4321", 23).map(|f| (f.offset, f.id, f.value)).collect();
        assert_eq!(got, vec![(23, *b"AO", &b"MAIN"[..]), (30, *b"AC", &b""[..]), (36, *b"AD", &b"4321"[..])]);
    }

    #[test]
    fn short_inputs_do_not_panic() {
        assert!(command_code(b"9").is_err());
        assert!(fixed_field(b"12", 3).is_err());
        assert_eq!(identified_fields(b"|", 0).count(), 0);
    }
}
