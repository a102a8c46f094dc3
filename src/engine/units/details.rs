//! Units on a patron's details tabs: contacts besides the preferred ones, statistical
//! categories, attachments and the picture.

use crate::domain::validate;
use crate::domain::*;

use super::super::ops::FileBytes;
use super::super::store::Write;
use super::super::unit::Unit;

fn next_id(ids: impl Iterator<Item = u32>) -> u32 {
    ids.max().unwrap_or(0) + 1
}

/// A contact's value as the institution's formats want it (the same checks as the preferred
/// field of its kind).
pub fn check_contact(inst: &Institution, c: &Contact) -> Result<(), Refusal> {
    let field = match c.kind {
        ContactKind::Email => "e-mail",
        ContactKind::Phone => "phone",
        ContactKind::Address => "address",
    };
    validate::required(field, &c.value)?;
    if let Some(pc) = &c.postal_code {
        validate::plain("postal code", pc)?;
    }
    let f = &inst.formats;
    match c.kind {
        ContactKind::Email => {
            validate::email_shape(&c.value)?;
            validate::pattern("e-mail", &c.value, f.email.as_deref())?;
        }
        ContactKind::Phone => validate::pattern("phone", &c.value, f.phone.as_deref())?,
        ContactKind::Address => {
            if let Some(pc) = &c.postal_code {
                validate::pattern("postal code", pc, f.postal_code.as_deref())?;
            }
        }
    }
    if c.kind != ContactKind::Address && c.postal_code.is_some() {
        return Err(Refusal::rule("only an address has a postal code"));
    }
    Ok(())
}

/// A statistical category: a code of letters, digits, `-` and `_` (1-64), and a plain note.
pub fn check_statistic(s: &Statistic) -> Result<(), Refusal> {
    let c = &s.category;
    validate::required("statistical category", c)?;
    if c.len() > 64 || !c.chars().all(|ch| ch.is_alphanumeric() || ch == '-' || ch == '_') {
        return Err(Refusal::rule(format!(
            "statistical category '{c}' must be 1-64 letters, digits, '-' or '_' (such as distance-student)"
        )));
    }
    if let Some(n) = &s.note {
        validate::plain("note", n)?;
    }
    Ok(())
}

pub fn add_contact(
    u: &mut Unit<'_>,
    id: u64,
    kind: ContactKind,
    value: &str,
    postal_code: Option<&str>,
    usage: ContactUse,
) -> Result<Patron, Refusal> {
    let (by, at) = (u.actor().to_string(), u.now());
    let limit = u.state.limits().max_contacts_per_patron;
    let inst = u.institution(&u.patron(id)?.institution)?;
    let value = value.trim();
    let postal_code = postal_code.map(str::trim).filter(|p| !p.is_empty()).map(String::from);
    u.update_patron(id, "contact-add", |p| {
        if p.contacts.len() >= limit as usize {
            return Err(Refusal::Full { what: "contacts", limit });
        }
        let c = Contact {
            id: next_id(p.contacts.iter().map(|c| c.id)),
            kind,
            value: value.into(),
            postal_code,
            usage,
            by,
            at,
        };
        check_contact(&inst, &c)?;
        let same = |v: &str| match kind {
            ContactKind::Email => v.eq_ignore_ascii_case(value),
            _ => v == value,
        };
        let preferred = match kind {
            ContactKind::Email => p.email.as_deref(),
            ContactKind::Phone => p.phone.as_deref(),
            ContactKind::Address => p.address.as_deref(),
        };
        if preferred.is_some_and(same) || p.contacts.iter().any(|o| o.kind == kind && same(&o.value)) {
            return Err(Refusal::Exists { what: "contact", key: value.into() });
        }
        let field = format!("{} {} ({})", kind.name(), c.id, usage.name());
        p.contacts.push(c);
        Ok(vec![(field, String::new(), value.into())])
    })
}

fn contact_index(p: &Patron, contact: u32) -> Result<usize, Refusal> {
    p.contacts.iter().position(|c| c.id == contact).ok_or(Refusal::NoEntry { what: "contact", id: contact })
}

pub fn remove_contact(u: &mut Unit<'_>, id: u64, contact: u32) -> Result<Patron, Refusal> {
    u.update_patron(id, "contact-remove", |p| {
        let old = p.contacts.remove(contact_index(p, contact)?);
        Ok(vec![(format!("{} {contact}", old.kind.name()), old.value, String::new())])
    })
}

/// Swaps the contact with the record's preferred one of its kind.
pub fn prefer_contact(u: &mut Unit<'_>, id: u64, contact: u32) -> Result<Patron, Refusal> {
    let (by, at) = (u.actor().to_string(), u.now());
    u.update_patron(id, "contact-prefer", |p| {
        let i = contact_index(p, contact)?;
        let c = p.contacts.remove(i);
        let (field, postal) = match c.kind {
            ContactKind::Email => (&mut p.email, None),
            ContactKind::Phone => (&mut p.phone, None),
            ContactKind::Address => (&mut p.address, Some(&mut p.postal_code)),
        };
        let before = field.replace(c.value.clone());
        let before_postal = match postal {
            Some(slot) => std::mem::replace(slot, c.postal_code.clone()),
            None => None,
        };
        if let Some(old) = before.clone() {
            p.contacts.insert(
                i,
                Contact { id: c.id, kind: c.kind, value: old, postal_code: before_postal, usage: c.usage, by, at },
            );
        }
        Ok(vec![(format!("preferred {}", c.kind.name()), before.unwrap_or_default(), c.value)])
    })
}

pub fn add_statistic(u: &mut Unit<'_>, id: u64, category: &str, note: Option<&str>) -> Result<Patron, Refusal> {
    let (by, at) = (u.actor().to_string(), u.now());
    let limit = u.state.limits().max_statistics_per_patron;
    let category = category.trim();
    let note = note.map(str::trim).filter(|n| !n.is_empty()).map(String::from);
    u.update_patron(id, "statistic-add", |p| {
        if p.statistics.len() >= limit as usize {
            return Err(Refusal::Full { what: "statistical categories", limit });
        }
        if p.statistics.iter().any(|s| s.category == category) {
            return Err(Refusal::Exists { what: "statistical category", key: category.into() });
        }
        let s = Statistic { id: next_id(p.statistics.iter().map(|s| s.id)), category: category.into(), note, by, at };
        check_statistic(&s)?;
        p.statistics.push(s);
        Ok(vec![("statistical category".into(), String::new(), category.into())])
    })
}

pub fn remove_statistic(u: &mut Unit<'_>, id: u64, statistic: u32) -> Result<Patron, Refusal> {
    u.update_patron(id, "statistic-remove", |p| {
        let Some(i) = p.statistics.iter().position(|s| s.id == statistic) else {
            return Err(Refusal::NoEntry { what: "statistical category", id: statistic });
        };
        let old = p.statistics.remove(i);
        Ok(vec![("statistical category".into(), old.category, String::new())])
    })
}

/// What a file is, from its first bytes (never from what the uploader says it is).
pub fn media_type(bytes: &[u8]) -> &'static str {
    match bytes {
        [0x89, b'P', b'N', b'G', 0x0d, 0x0a, 0x1a, 0x0a, ..] => "image/png",
        [0xff, 0xd8, 0xff, ..] => "image/jpeg",
        [b'G', b'I', b'F', b'8', b'7' | b'9', b'a', ..] => "image/gif",
        [b'R', b'I', b'F', b'F', _, _, _, _, b'W', b'E', b'B', b'P', ..] => "image/webp",
        [b'%', b'P', b'D', b'F', b'-', ..] => "application/pdf",
        _ if std::str::from_utf8(bytes).is_ok_and(|t| !t.chars().any(|c| c.is_control() && !c.is_whitespace())) => {
            "text/plain"
        }
        _ => "application/octet-stream",
    }
}

/// SHA-256 of a file's bytes, hex.
pub fn sha256(bytes: &[u8]) -> String {
    use sha2::Digest;
    crate::domain::secret::hex(&sha2::Sha256::digest(bytes))
}

/// A file's name as kept: its last path part, plain, at most 200 bytes.
pub fn file_name(name: &str) -> Result<String, Refusal> {
    let base = name.rsplit(['/', '\\']).next().unwrap_or("").trim();
    validate::required("file name", base)?;
    if base.len() > 200 || base == "." || base == ".." {
        return Err(Refusal::rule(format!("file name '{base}' must be 1-200 bytes")));
    }
    Ok(base.to_string())
}

pub fn add_attachment(u: &mut Unit<'_>, id: u64, name: &str, content: FileBytes) -> Result<Patron, Refusal> {
    let (by, at) = (u.actor().to_string(), u.now());
    let limits = *u.state.limits();
    let name = file_name(name)?;
    let size = content.0.len();
    if size > limits.max_attachment_bytes as usize {
        return Err(Refusal::TooLarge { what: "attachment", bytes: size as u64, limit: limits.max_attachment_bytes });
    }
    if size == 0 {
        return Err(AsItStands::EmptyFile.into());
    }
    let mut number = 0;
    let p = u.update_patron(id, "attachment-add", |p| {
        if p.attachments.len() >= limits.max_attachments_per_patron as usize {
            return Err(Refusal::Full { what: "attachments", limit: limits.max_attachments_per_patron });
        }
        number = next_id(p.attachments.iter().map(|a| a.id));
        let f = FileInfo {
            id: number,
            name: name.clone(),
            media_type: media_type(&content.0).into(),
            bytes: size as u32,
            sha256: sha256(&content.0),
            by,
            at,
        };
        let change = (format!("attachment {number}"), String::new(), format!("{} ({} bytes)", f.name, f.bytes));
        p.attachments.push(f);
        Ok(vec![change])
    })?;
    u.put(Write::File(id, number, content.0))?;
    Ok(p)
}

pub fn remove_attachment(u: &mut Unit<'_>, id: u64, attachment: u32) -> Result<Patron, Refusal> {
    let p = u.update_patron(id, "attachment-remove", |p| {
        let Some(i) = p.attachments.iter().position(|a| a.id == attachment) else {
            return Err(Refusal::NoEntry { what: "attachment", id: attachment });
        };
        let old = p.attachments.remove(i);
        Ok(vec![(format!("attachment {attachment}"), old.name, String::new())])
    })?;
    u.put(Write::RemoveFile(id, attachment))?;
    Ok(p)
}

/// Sets (or, with none, removes) the picture: an image, within `max_picture_bytes`.
pub fn set_picture(u: &mut Unit<'_>, id: u64, content: Option<FileBytes>) -> Result<Patron, Refusal> {
    let (by, at) = (u.actor().to_string(), u.now());
    let limit = u.state.limits().max_picture_bytes;
    let info = match &content {
        None => None,
        Some(c) if c.0.len() > limit as usize => {
            return Err(Refusal::TooLarge { what: "picture", bytes: c.0.len() as u64, limit });
        }
        Some(c) => {
            let kind = media_type(&c.0);
            if !kind.starts_with("image/") {
                return Err(Refusal::NotAPicture);
            }
            Some(FileInfo {
                id: 0,
                name: "picture".into(),
                media_type: kind.into(),
                bytes: c.0.len() as u32,
                sha256: sha256(&c.0),
                by,
                at,
            })
        }
    };
    let action = if info.is_some() { "picture-set" } else { "picture-remove" };
    let p = u.update_patron(id, action, |p| {
        if info.is_none() && p.picture.is_none() {
            return Err(Refusal::NoEntry { what: "picture", id: 0 });
        }
        let before = p.picture.as_ref().map(|f| format!("{} bytes", f.bytes)).unwrap_or_default();
        let after = info.as_ref().map(|f| format!("{} bytes", f.bytes)).unwrap_or_default();
        p.picture = info;
        Ok(vec![("picture".into(), before, after)])
    })?;
    match content {
        Some(c) => u.put(Write::File(id, 0, c.0))?,
        None => u.put(Write::RemoveFile(id, 0))?,
    }
    Ok(p)
}

/// The writes that remove every file of a patron leaving the register for good.
pub fn remove_files(p: &Patron) -> impl Iterator<Item = Write> + '_ {
    p.files().map(move |f| Write::RemoveFile(p.id, f.id))
}
