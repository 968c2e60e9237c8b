//! A workflow's typed record: the attributes of the composite type the
//! extension keeps for a workflow (`webhook_set_record_type`), derived from
//! its parameter list, and the `ALTER TYPE` steps that bring a type there.
//!
//! The rules (docs/sql-api.md, *Typed records*):
//!
//! * one attribute per top-level parameter (nested leaves stay inside their
//!   parent's `jsonb`); a name listed under several sources is one attribute,
//!   as it is one key of `events.params`, typed as its header parameter, else
//!   its body one, else its query one (the order in which the listener
//!   fills `params`, the later winning);
//! * `text` → `text`, `number` → `numeric`, `boolean` → `boolean`, `object`,
//!   `array` and `any` → `jsonb`;
//! * names ([`attribute_name`]): ASCII letters lower-cased, so the key as it
//!   is written, unquoted, names the attribute (`p.orderId` is `p.orderid`);
//!   every run of other characters than letters, digits and `_` becomes one
//!   `_`, none at either end (`X-GitHub-Event` → `x_github_event`,
//!   `@timestamp` → `timestamp`); a name that would start with a digit gets a
//!   leading `_`, one left empty is `_`; at most 63 bytes (PostgreSQL's
//!   limit); a name taken by an earlier parameter (in list order: source,
//!   then position, then name) gets `_2`, `_3`, … .

use std::collections::{HashMap, HashSet};

use crate::validate::{ParamType, Source};

/// PostgreSQL's longest identifier (NAMEDATALEN - 1).
pub const MAX_IDENTIFIER_BYTES: usize = 63;

/// The SQL type of an attribute.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttributeType {
    Text,
    Numeric,
    Boolean,
    Jsonb,
}

impl AttributeType {
    pub fn of_parameter(ty: ParamType) -> AttributeType {
        match ty {
            ParamType::Text => AttributeType::Text,
            ParamType::Number => AttributeType::Numeric,
            ParamType::Boolean => AttributeType::Boolean,
            ParamType::Object | ParamType::Array | ParamType::Any => AttributeType::Jsonb,
        }
    }

    /// As `pg_catalog.format_type` spells it.
    pub fn as_str(&self) -> &'static str {
        match self {
            AttributeType::Text => "text",
            AttributeType::Numeric => "numeric",
            AttributeType::Boolean => "boolean",
            AttributeType::Jsonb => "jsonb",
        }
    }

    /// Schema-qualified, for statements run under any search_path.
    pub fn qualified(&self) -> &'static str {
        match self {
            AttributeType::Text => "pg_catalog.text",
            AttributeType::Numeric => "pg_catalog.numeric",
            AttributeType::Boolean => "pg_catalog.bool",
            AttributeType::Jsonb => "pg_catalog.jsonb",
        }
    }
}

/// One parameter of the list, as webhook.parameters holds it.
#[derive(Debug, Clone)]
pub struct ListedParameter {
    pub name: String,
    pub source: Source,
    pub ty: ParamType,
    pub depth: i32,
}

/// One attribute of the record: the `params` key it holds, its name and type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub key: String,
    pub name: String,
    pub ty: AttributeType,
}

/// The attribute name of a key, before collisions are resolved.
pub fn attribute_name(key: &str) -> String {
    let mut name = String::with_capacity(key.len());
    let mut pending_separator = false;
    for c in key.chars() {
        if c == '_' || c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric()) {
            if pending_separator && !name.is_empty() {
                name.push('_');
            }
            pending_separator = false;
            name.push(c.to_ascii_lowercase());
        } else {
            pending_separator = true;
        }
    }
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        name.insert(0, '_');
    }
    if name.is_empty() {
        name.push('_');
    }
    truncate(&name, MAX_IDENTIFIER_BYTES).to_string()
}

/// The longest prefix of `s` of at most `max` bytes that ends on a character.
fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn source_rank(source: Source) -> u8 {
    // Which source's type an attribute takes when a name is listed under
    // several: the one whose value ends up in `params`.
    match source {
        Source::Header => 0,
        Source::Body => 1,
        Source::Query => 2,
    }
}

/// The record's attributes for a parameter list given in list order.
pub fn record_attributes(params: &[ListedParameter]) -> Vec<Attribute> {
    let mut keys: Vec<&ListedParameter> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    for p in params.iter().filter(|p| p.depth == 0) {
        match index.get(p.name.as_str()) {
            Some(&i) => {
                if source_rank(p.source) < source_rank(keys[i].source) {
                    keys[i] = p;
                }
            }
            None => {
                index.insert(&p.name, keys.len());
                keys.push(p);
            }
        }
    }
    let mut taken: HashSet<String> = HashSet::new();
    keys.into_iter()
        .map(|p| {
            let base = attribute_name(&p.name);
            let mut name = base.clone();
            let mut n = 2;
            while taken.contains(&name) {
                let suffix = format!("_{n}");
                name = format!(
                    "{}{suffix}",
                    truncate(&base, MAX_IDENTIFIER_BYTES - suffix.len())
                );
                n += 1;
            }
            taken.insert(name.clone());
            Attribute {
                key: p.name.clone(),
                name,
                ty: AttributeType::of_parameter(p.ty),
            }
        })
        .collect()
}

/// An event's record as `jsonb_populate_record` takes it: `{attribute:
/// value}` for each attribute whose key `params` holds, and `{attribute:
/// key}` to name the parameter when a value does not convert.
pub fn record_values(
    attributes: &[Attribute],
    params: &serde_json::Map<String, serde_json::Value>,
) -> (serde_json::Value, serde_json::Value) {
    let mut values = serde_json::Map::new();
    let mut keys = serde_json::Map::new();
    for a in attributes {
        if let Some(value) = params.get(&a.key) {
            values.insert(a.name.clone(), value.clone());
            keys.insert(a.name.clone(), serde_json::Value::String(a.key.clone()));
        }
    }
    (values.into(), keys.into())
}

/// One step of `ALTER TYPE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Add(String, AttributeType),
    Drop(String),
    Retype(String, AttributeType),
}

impl Change {
    /// The clause of `ALTER TYPE … <clause>, <clause>`.
    pub fn clause(&self) -> String {
        match self {
            Change::Add(name, ty) => {
                format!("ADD ATTRIBUTE {} {}", quote_ident(name), ty.qualified())
            }
            Change::Drop(name) => format!("DROP ATTRIBUTE {}", quote_ident(name)),
            Change::Retype(name, ty) => {
                format!(
                    "ALTER ATTRIBUTE {} TYPE {}",
                    quote_ident(name),
                    ty.qualified()
                )
            }
        }
    }

    /// Whether it can break a function that takes the type.
    pub fn breaks_users(&self) -> bool {
        !matches!(self, Change::Add(..))
    }

    pub fn attribute(&self) -> &str {
        match self {
            Change::Add(name, _) | Change::Drop(name) | Change::Retype(name, _) => name,
        }
    }
}

/// The steps from a type's attributes (name, `format_type` spelling) to
/// `desired`: drops first, then type changes, then additions in list order.
pub fn changes(current: &[(String, String)], desired: &[Attribute]) -> Vec<Change> {
    let wanted: HashMap<&str, AttributeType> =
        desired.iter().map(|a| (a.name.as_str(), a.ty)).collect();
    let have: HashMap<&str, &str> = current
        .iter()
        .map(|(n, t)| (n.as_str(), t.as_str()))
        .collect();
    let mut steps: Vec<Change> = current
        .iter()
        .filter(|(n, _)| !wanted.contains_key(n.as_str()))
        .map(|(n, _)| Change::Drop(n.clone()))
        .collect();
    for a in desired {
        match have.get(a.name.as_str()) {
            Some(&ty) if ty == a.ty.as_str() => {}
            Some(_) => steps.push(Change::Retype(a.name.clone(), a.ty)),
            None => {}
        }
    }
    for a in desired {
        if !have.contains_key(a.name.as_str()) {
            steps.push(Change::Add(a.name.clone(), a.ty));
        }
    }
    steps
}

/// An identifier quoted as PostgreSQL's quote_ident does when it has to:
/// always, here (a name the user would write unquoted still matches).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(name: &str, source: Source, ty: ParamType, depth: i32) -> ListedParameter {
        ListedParameter {
            name: name.into(),
            source,
            ty,
            depth,
        }
    }

    #[test]
    fn names_are_what_the_user_writes_unquoted() {
        assert_eq!(attribute_name("order_id"), "order_id");
        assert_eq!(attribute_name("orderId"), "orderid");
        assert_eq!(attribute_name("X-GitHub-Event"), "x_github_event");
        assert_eq!(attribute_name("@timestamp"), "timestamp");
        assert_eq!(attribute_name("event-data"), "event_data");
        assert_eq!(attribute_name("hub.mode"), "hub_mode");
        assert_eq!(attribute_name("a  --  b"), "a_b");
        assert_eq!(attribute_name("_id"), "_id");
        assert_eq!(attribute_name("amount?"), "amount");
        assert_eq!(attribute_name("3ds"), "_3ds");
        assert_eq!(attribute_name("@@"), "_");
        assert_eq!(attribute_name("Größe"), "größe");
        assert_eq!(attribute_name("prix€"), "prix");
        assert_eq!(attribute_name("$ref"), "ref");
    }

    #[test]
    fn long_names_are_cut_on_a_character_at_63_bytes() {
        assert_eq!(attribute_name(&"a".repeat(100)), "a".repeat(63));
        // 'é' is two bytes: 31 of them are 62 bytes, a 32nd would be 64.
        let cut = attribute_name(&"é".repeat(40));
        assert_eq!(cut, "é".repeat(31));
        assert!(cut.len() <= MAX_IDENTIFIER_BYTES);
    }

    #[test]
    fn top_level_parameters_only_with_their_types() {
        let attrs = record_attributes(&[
            param("amount", Source::Body, ParamType::Number, 0),
            param("customer", Source::Body, ParamType::Object, 0),
            param("customer.email", Source::Body, ParamType::Text, 1),
            param("paid", Source::Body, ParamType::Boolean, 0),
            param("items", Source::Body, ParamType::Array, 0),
            param("note", Source::Body, ParamType::Any, 0),
            param("X-Shop", Source::Header, ParamType::Text, 0),
        ]);
        let got: Vec<(&str, &str, &str)> = attrs
            .iter()
            .map(|a| (a.key.as_str(), a.name.as_str(), a.ty.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("amount", "amount", "numeric"),
                ("customer", "customer", "jsonb"),
                ("paid", "paid", "boolean"),
                ("items", "items", "jsonb"),
                ("note", "note", "jsonb"),
                ("X-Shop", "x_shop", "text"),
            ]
        );
    }

    #[test]
    fn one_name_in_several_sources_is_one_attribute_typed_as_params_holds_it() {
        let attrs = record_attributes(&[
            param("id", Source::Body, ParamType::Number, 0),
            param("id", Source::Query, ParamType::Text, 0),
        ]);
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].ty, AttributeType::Numeric);
        let attrs = record_attributes(&[
            param("id", Source::Body, ParamType::Number, 0),
            param("id", Source::Header, ParamType::Text, 0),
        ]);
        assert_eq!(attrs.len(), 1);
        assert_eq!(attrs[0].ty, AttributeType::Text);
    }

    #[test]
    fn colliding_names_get_numbers_in_list_order() {
        let long = "k".repeat(70);
        let attrs = record_attributes(&[
            param("orderId", Source::Body, ParamType::Text, 0),
            param("orderid", Source::Body, ParamType::Text, 0),
            param("order-id", Source::Body, ParamType::Text, 0),
            param("order_id", Source::Body, ParamType::Text, 0),
            param("OrderID", Source::Body, ParamType::Text, 0),
            param(&long, Source::Body, ParamType::Text, 0),
            param(&format!("{long}x"), Source::Body, ParamType::Text, 0),
        ]);
        let names: Vec<&str> = attrs.iter().map(|a| a.name.as_str()).collect();
        let k61 = format!("{}_2", "k".repeat(61));
        assert_eq!(
            names,
            [
                "orderid",
                "orderid_2",
                "order_id",
                "order_id_2",
                "orderid_3",
                &"k".repeat(63),
                &k61
            ]
        );
    }

    #[test]
    fn changes_drop_retype_then_add() {
        let desired = record_attributes(&[
            param("amount", Source::Body, ParamType::Text, 0),
            param("paid", Source::Body, ParamType::Boolean, 0),
            param("new", Source::Body, ParamType::Object, 0),
        ]);
        let current = vec![
            ("gone".to_string(), "text".to_string()),
            ("amount".to_string(), "numeric".to_string()),
            ("paid".to_string(), "boolean".to_string()),
        ];
        let steps = changes(&current, &desired);
        assert_eq!(
            steps,
            [
                Change::Drop("gone".into()),
                Change::Retype("amount".into(), AttributeType::Text),
                Change::Add("new".into(), AttributeType::Jsonb),
            ]
        );
        assert_eq!(
            steps.iter().map(Change::clause).collect::<Vec<_>>(),
            [
                "DROP ATTRIBUTE \"gone\"",
                "ALTER ATTRIBUTE \"amount\" TYPE pg_catalog.text",
                "ADD ATTRIBUTE \"new\" pg_catalog.jsonb",
            ]
        );
        assert!(changes(&[("paid".into(), "boolean".into())], &desired[1..2]).is_empty());
        // An attribute retyped by hand (integer) goes back to the list's type.
        assert_eq!(
            changes(&[("paid".into(), "integer".into())], &desired[1..2]),
            [Change::Retype("paid".into(), AttributeType::Boolean)]
        );
    }

    #[test]
    fn values_go_to_their_attributes_by_key() {
        let attrs = record_attributes(&[
            param("orderId", Source::Body, ParamType::Text, 0),
            param("orderid", Source::Body, ParamType::Text, 0),
            param("X-Event", Source::Header, ParamType::Text, 0),
            param("gone", Source::Body, ParamType::Text, 0),
        ]);
        let params =
            serde_json::json!({"orderId": "A", "orderid": "b", "X-Event": "push", "extra": 1});
        let (values, keys) = record_values(&attrs, params.as_object().unwrap());
        assert_eq!(
            values,
            serde_json::json!({"orderid": "A", "orderid_2": "b", "x_event": "push"})
        );
        assert_eq!(
            keys,
            serde_json::json!({"orderid": "orderId", "orderid_2": "orderid", "x_event": "X-Event"})
        );
    }

    #[test]
    fn quoting_doubles_quotes() {
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
