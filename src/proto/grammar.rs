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

use nom::bytes::complete::{take, take_till};
use nom::combinator::opt;
use nom::{IResult, Parser};

/// The two-byte command code.
pub(crate) fn command_code(input: &[u8]) -> IResult<&[u8], [u8; 2]> {
    take(2usize).map(|c: &[u8]| [c.first().copied().unwrap_or(0), c.get(1).copied().unwrap_or(0)]).parse(input)
}

/// One fixed field of `width` bytes.
pub(crate) fn fixed_field(input: &[u8], width: usize) -> IResult<&[u8], &[u8]> {
    take(width).parse(input)
}

/// One `|`-terminated segment (the delimiter is optional on the last one).
fn segment(input: &[u8]) -> IResult<&[u8], &[u8]> {
    let (input, seg) = take_till(|b| b == b'|').parse(input)?;
    let (input, _) = opt(nom::bytes::complete::tag(&b"|"[..])).parse(input)?;
    Ok((input, seg))
}

/// A parsed identified field: where it starts, its id and its raw value.
pub(crate) struct IdentifiedField<'a> {
    pub offset: usize,
    pub id: [u8; 2],
    pub value: &'a [u8],
}

/// The identified fields that follow the fixed part, which ended at byte `offset` of the frame.
pub(crate) fn identified_fields(mut input: &[u8], mut offset: usize) -> impl Iterator<Item = IdentifiedField<'_>> {
    std::iter::from_fn(move || {
        loop {
            if input.is_empty() {
                return None;
            }
            let before = input.len();
            let Ok((rest, seg)) = segment(input) else {
                return None;
            };
            let at = offset;
            offset += before - rest.len();
            input = rest;
            if let [a, b, value @ ..] = seg {
                return Some(IdentifiedField { offset: at, id: [*a, *b], value });
            }
        }
    })
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
