//! Outside input that is arbitrary bytes: the CSV importer and the field
//! normalizers never panic, and normalizing is idempotent.

use custodian::{ImportOptions, Schema};
use proptest::prelude::*;

use crate::{Fixture, admin};

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn csv_import_never_panics(body in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let fx = Fixture::new();
        let engine = fx.open();
        let mut csv = b"name,phone,email,tags\n".to_vec();
        csv.extend_from_slice(&body);
        match engine.import_csv(&admin(), csv.as_slice(), &ImportOptions { batch_size: 7 }, |_| {}) {
            Ok(report) => {
                prop_assert_eq!(engine.count_customers(&admin()).unwrap(), report.imported);
                for row in &report.errors {
                    prop_assert!(row.line >= 2, "{}", row);
                }
            }
            Err(e) => prop_assert!(!e.to_string().is_empty()),
        }
        engine.verify_audit(None).unwrap();
    }

    #[test]
    fn normalizing_is_idempotent_and_never_panics(raw in "\\PC{0,40}|[0-9 +()-]{0,20}|[a-zA-Z0-9.@_-]{0,30}") {
        let schema = Schema::default();
        for field in ["name", "phone", "email", "address", "id_number", "birthday", "tags", "notes"] {
            if let Ok(once) = schema.normalize(field, &raw) {
                let twice = schema.normalize(field, &once);
                prop_assert_eq!(twice.as_deref(), Ok(once.as_str()), "field {}", field);
            }
        }
    }
}
