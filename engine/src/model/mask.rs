//! Masked renderings: enough to recognise a value, not enough to use it.

use super::FieldType;

/// The masked rendering of a normalized value of a field of type `kind`.
pub fn mask_value(kind: FieldType, value: &str) -> String {
    match kind {
        FieldType::Phone => mask_phone(value),
        FieldType::Email => mask_email(value),
        FieldType::IdNumber => keep_ends(value, 4, 4),
        FieldType::Date => match value.get(..4) {
            Some(year) if value.len() == 10 => format!("{year}-**-**"),
            _ => "****".into(),
        },
        FieldType::Address => keep_ends(value, 6, 0),
        FieldType::Text | FieldType::Number | FieldType::Enum | FieldType::List => {
            keep_ends(value, 1, 0)
        }
    }
}

/// `+8613800138000` → `138****8000`, the customary rendering of a Chinese
/// mobile number (3 + 4 of 11 digits); other numbers show at most half.
fn mask_phone(value: &str) -> String {
    match value.strip_prefix("+86") {
        Some(national) if national.chars().count() == 11 => ends(national, 3, 4),
        _ => keep_ends(value, 4, 4),
    }
}

/// `zhang.wei@example.com` → `z***@example.com`; a local part of one or
/// two characters is hidden whole.
fn mask_email(value: &str) -> String {
    match value.split_once('@') {
        Some((local, domain)) => {
            let first: String = match local.chars().count() {
                0..=2 => String::new(),
                _ => local.chars().take(1).collect(),
            };
            format!("{first}***@{domain}")
        }
        None => keep_ends(value, 1, 0),
    }
}

/// Keeps up to `head` leading and `tail` trailing characters, never more
/// than half of the value, with `****` between (a fixed run, so the mask
/// does not reveal the length).
fn keep_ends(value: &str, head: usize, tail: usize) -> String {
    let half = value.chars().count() / 2;
    let (mut head, mut tail) = (head, tail);
    while head + tail > half {
        if tail >= head && tail > 0 {
            tail -= 1;
        } else {
            head = head.saturating_sub(1);
        }
    }
    ends(value, head, tail)
}

fn ends(value: &str, head: usize, tail: usize) -> String {
    let chars: Vec<char> = value.chars().collect();
    if head + tail == 0 || chars.len() <= head + tail {
        return "****".into();
    }
    let start: String = chars.iter().take(head).collect();
    let end: String = chars.iter().skip(chars.len() - tail).collect();
    format!("{start}****{end}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks() {
        assert_eq!(
            mask_value(FieldType::Phone, "+8613800138000"),
            "138****8000"
        );
        assert_eq!(mask_value(FieldType::Phone, "+447911123456"), "+44****456");
        assert_eq!(mask_value(FieldType::Phone, "+12345678"), "+1****78");
        assert_eq!(mask_value(FieldType::IdNumber, "E12345678"), "E1****78");
        assert_eq!(
            mask_value(FieldType::Email, "ab@example.com"),
            "***@example.com"
        );
        assert_eq!(
            mask_value(FieldType::Email, "zhang@example.com"),
            "z***@example.com"
        );
        assert_eq!(mask_value(FieldType::Text, "李娜"), "李****");
        assert_eq!(mask_value(FieldType::Date, "1990-05-17"), "1990-**-**");
        assert_eq!(
            mask_value(FieldType::IdNumber, "11010519491231002X"),
            "1101****002X"
        );
        assert_eq!(mask_value(FieldType::Text, "x"), "****");
    }
}
