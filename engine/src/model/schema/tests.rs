use super::*;

#[test]
fn default_schema_parses() {
    let schema = Schema::from_toml(DEFAULT_SCHEMA).unwrap();
    for name in [
        "name",
        "phone",
        "email",
        "address",
        "company",
        "id_number",
        "birthday",
        "tags",
        "notes",
    ] {
        assert!(schema.field(name).is_some(), "{name}");
    }
    assert_eq!(Schema::default(), schema);
}

#[test]
fn phones_normalize_to_e164() {
    for (raw, want) in [
        ("13800138000", "+8613800138000"),
        ("138-0013-8000", "+8613800138000"),
        ("+86 138 0013 8000", "+8613800138000"),
        ("008613800138000", "+8613800138000"),
        ("8613800138000", "+8613800138000"),
        ("+44 7911 123456", "+447911123456"),
        ("+1 (415) 555-2671", "+14155552671"),
    ] {
        assert_eq!(normalize_phone(raw).as_deref(), Ok(want), "{raw}");
    }
    for raw in [
        "12800138000",
        "1380013800",
        "+86 12345",
        "hello",
        "+0123456789",
        "",
        "+",
    ] {
        assert!(normalize_phone(raw).is_err(), "{raw}");
    }
}

#[test]
fn emails_validate_and_lowercase() {
    assert_eq!(
        normalize_email("Zhang.Wei@Example.COM").as_deref(),
        Ok("zhang.wei@example.com")
    );
    for raw in [
        "no-at",
        "@example.com",
        "a@b",
        "a@@b.com",
        "a b@c.com",
        "a@-x.com",
        "a..b@c.com",
    ] {
        assert!(normalize_email(raw).is_err(), "{raw}");
    }
}

#[test]
fn resident_id_check_digit() {
    assert_eq!(
        normalize_id_number("11010519491231002x").as_deref(),
        Ok("11010519491231002X")
    );
    assert!(normalize_id_number("110105194912310021").is_err());
    assert_eq!(normalize_id_number("E12345678").as_deref(), Ok("E12345678"));
}

/// Regression (found by the idempotence property test): lowercasing
/// `Ⱥ` (2 bytes) gives `ⱥ` (3), so a list item under the limit came out
/// over it and the stored value failed its own validation.
#[test]
fn normalized_values_pass_their_own_validation() {
    let schema = Schema::default();
    let item = "Ⱥ".repeat(30); // 60 bytes, 90 once lowercased
    assert!(schema.normalize("tags", &item).is_err());
    let email = format!("{}@example.com", "Ⱥ".repeat(60));
    if let Ok(once) = schema.normalize("email", &email) {
        assert_eq!(schema.normalize("email", &once), Ok(once));
    }
}

#[test]
fn schema_errors_name_the_field() {
    let err = Schema::from_toml(
        "[[field]]\nname = \"Bad Name\"\ntype = \"text\"\nsensitivity = \"public\"\n",
    )
    .unwrap_err();
    assert!(err.to_string().contains("Bad Name"), "{err}");
    let schema = Schema::default();
    let err = schema.normalize("shoe_size", "42").unwrap_err();
    assert!(err.to_string().contains("shoe_size"), "{err}");
    let err = schema.normalize("phone", "12").unwrap_err();
    assert!(err.to_string().contains("phone"), "{err}");
}

/// A refusal names the field and the problem, never the value: reasons are
/// audited and shown, and a refused value may be anything, a real one
/// mistyped included.
#[test]
fn refusals_never_quote_the_refused_value() {
    let schema = Schema::from_toml(&format!(
        "{DEFAULT_SCHEMA}
[[field]]
name = \"shoe_size\"
type = \"number\"
sensitivity = \"public\"
purposes = [\"service\"]

[[field]]
name = \"tier\"
type = \"enum\"
values = [\"gold\", \"silver\"]
sensitivity = \"public\"
purposes = [\"service\"]
"
    ))
    .unwrap();
    let marker = "QZX7259";
    let cases = [
        ("phone", format!("+86 {marker}")),
        ("phone", format!("1380013{marker}")),
        ("phone", "+0998877665544".to_string()),
        ("email", format!("{marker}@@example.org")),
        ("email", format!("{marker}@nodot")),
        ("email", format!(".{marker}@example.org")),
        ("birthday", format!("1990-01-{marker}")),
        ("shoe_size", format!("4{marker}")),
        ("tier", format!("platinum{marker}")),
        ("id_number", format!("{marker}!")),
        ("id_number", "110105198803129993".to_string()),
        ("tags", format!("ok,{}", marker.repeat(10))),
        ("name", format!("{marker}\u{1b}[2J")),
    ];
    for (field, value) in &cases {
        let err = schema.normalize(field, value).unwrap_err().to_string();
        assert!(err.contains(&format!("`{field}`")), "{err}");
        assert!(
            !err.contains(marker) && !err.contains("9993"),
            "{field}: {err}"
        );
    }
    let unknown = schema.normalize(&format!("{marker}@example.org"), "x");
    assert!(!unknown.unwrap_err().to_string().contains(marker));
    for err in [
        crate::model::Status::parse(marker).unwrap_err(),
        crate::model::Channel::parse(marker).unwrap_err(),
        crate::model::Direction::parse(marker).unwrap_err(),
        crate::model::parse_amount(marker).unwrap_err(),
        crate::model::ConsentChange::parse_list(&format!("x({marker}"), "web", "v1").unwrap_err(),
    ] {
        assert!(!err.to_string().contains(marker), "{err}");
    }
}
