//! The engine against a simple model: random sequences of creates, updates
//! and deletes, after which every customer reads back exactly as the model
//! says, and every phone finds exactly the customers that hold it.

use std::collections::BTreeMap;

use custodian::{CustomerUpdate, NewCustomer, Query};
use proptest::prelude::*;

use crate::{Fixture, admin};

const PHONES: &[&str] = &["+8613800000001", "+8613800000002", "+8613800000003"];
const NAMES: &[&str] = &["Li Na", "Zhang Wei", "王芳"];

#[derive(Clone, Debug)]
enum Op {
    Create { name: usize, phone: Option<usize> },
    SetPhone { target: usize, phone: usize },
    ClearPhone { target: usize },
    Rename { target: usize, name: usize },
    Delete { target: usize },
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        (0..NAMES.len(), proptest::option::of(0..PHONES.len()))
            .prop_map(|(name, phone)| Op::Create { name, phone }),
        (0..8usize, 0..PHONES.len()).prop_map(|(target, phone)| Op::SetPhone { target, phone }),
        (0..8usize).prop_map(|target| Op::ClearPhone { target }),
        (0..8usize, 0..NAMES.len()).prop_map(|(target, name)| Op::Rename { target, name }),
        (0..8usize).prop_map(|target| Op::Delete { target }),
    ]
}

type Model = BTreeMap<u64, BTreeMap<&'static str, &'static str>>;

fn pick(model: &Model, target: usize) -> Option<u64> {
    model.keys().nth(target % model.len().max(1)).copied()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(ops in proptest::collection::vec(op(), 1..24)) {
        let fx = Fixture::new();
        let engine = fx.open();
        let ctx = admin();
        let mut model = Model::new();
        for op in ops {
            let update = |id, change| engine.update_customer(&ctx, id, change).unwrap();
            match op {
                Op::Create { name, phone } => {
                    let mut new = NewCustomer::new().field("name", NAMES[name]);
                    let mut fields = BTreeMap::from([("name", NAMES[name])]);
                    if let Some(p) = phone {
                        new = new.field("phone", PHONES[p]);
                        fields.insert("phone", PHONES[p]);
                    }
                    let id = engine.create_customer(&ctx, new).unwrap();
                    prop_assert!(model.insert(id, fields).is_none());
                }
                Op::SetPhone { target, phone } => if let Some(id) = pick(&model, target) {
                    update(id, CustomerUpdate::new().set("phone", PHONES[phone]));
                    model.get_mut(&id).unwrap().insert("phone", PHONES[phone]);
                },
                Op::ClearPhone { target } => if let Some(id) = pick(&model, target) {
                    update(id, CustomerUpdate::new().clear("phone"));
                    model.get_mut(&id).unwrap().remove("phone");
                },
                Op::Rename { target, name } => if let Some(id) = pick(&model, target) {
                    update(id, CustomerUpdate::new().set("name", NAMES[name]));
                    model.get_mut(&id).unwrap().insert("name", NAMES[name]);
                },
                Op::Delete { target } => if let Some(id) = pick(&model, target) {
                    engine.delete_customer(&ctx, id).unwrap();
                    model.remove(&id);
                },
            }
        }
        prop_assert_eq!(engine.count_customers(&ctx).unwrap(), model.len() as u64);
        for (id, fields) in &model {
            let view = engine.customer(&ctx, *id).unwrap();
            let got: BTreeMap<&str, &str> =
                view.fields.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
            prop_assert_eq!(&got, fields);
        }
        for phone in PHONES {
            let mut found: Vec<u64> = engine
                .find_customers(&ctx, &Query::field("phone", *phone), 100)
                .unwrap()
                .into_iter()
                .map(|c| c.id)
                .collect();
            found.sort_unstable();
            let expected: Vec<u64> = model
                .iter()
                .filter(|(_, f)| f.get("phone") == Some(phone))
                .map(|(id, _)| *id)
                .collect();
            prop_assert_eq!(found, expected);
        }
        engine.verify_audit(None).unwrap();
    }
}
