//! A workflow's typed record (`webhook_set_record_type`, sql/api.sql): its
//! composite type is created and kept to the parameter list here, as the
//! workflow's owner, so the type belongs to the owner and is changed only
//! with the owner's privileges whoever edits the parameters (the owner, a
//! superuser, or the listener storing a captured sample). Which attributes
//! and which `ALTER TYPE` steps: webhook_core::record.
//!
//! Each function first finds the workflow *as the caller* (row-level
//! security decides), as src/privileged.rs does. The parameter functions of
//! sql/api.sql and the listener storing a captured sample call
//! `_sync_record_type` once their change is made; plain DML on
//! webhook.parameters (and so a restore) changes no type.

use pgrx::datum::DatumWithOid;
use pgrx::prelude::*;

use webhook_core::record::{self, ListedParameter};
use webhook_core::validate::Source;

use crate::pg::errors::{ok_or_raise, SqlError};
use crate::pg::spi::as_role_with_safe_path;
use crate::privileged::require_workflow;

/// The workflow's owner, found as the caller.
fn owner_of(workflow: pgrx::Uuid) -> pg_sys::Oid {
    require_workflow(workflow, true);
    let owner = ok_or_raise(Spi::get_one_with_args::<i64>(
        "SELECT w.owner::pg_catalog.oid::pg_catalog.int8 FROM webhook.workflows w
          WHERE w.id OPERATOR(pg_catalog.=) $1",
        &[DatumWithOid::from(workflow)],
    ))
    .unwrap_or(0);
    pg_sys::Oid::from(owner as u32)
}

/// The parameter list's attributes (list order: source, position, name).
fn desired_attributes(workflow: pgrx::Uuid) -> Vec<record::Attribute> {
    let listed = ok_or_raise(Spi::connect(|client| {
        client
            .select(
                "SELECT p.name, p.source, p.type, p.depth FROM webhook.parameters p
                  WHERE p.workflow_id OPERATOR(pg_catalog.=) $1
                    AND p.depth OPERATOR(pg_catalog.=) 0
                  ORDER BY p.source, p.position, p.name",
                None,
                &[DatumWithOid::from(workflow)],
            )?
            .map(|row| {
                // Rows the CHECK constraints make impossible are passed
                // over, as src/pg/catalog.rs does, so both map alike.
                Ok((|| {
                    Some(ListedParameter {
                        name: row.get::<String>(1).ok()??,
                        source: row.get::<String>(2).ok()??.parse::<Source>().ok()?,
                        ty: webhook_core::request::param_type(&row.get::<String>(3).ok()??),
                        depth: row.get::<i32>(4).ok()??,
                    })
                })())
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    }));
    record::record_attributes(&listed.into_iter().flatten().collect::<Vec<_>>())
}

/// The workflow's record type as it stands: its OID, its relation, its
/// qualified name and its attributes (name, type as format_type spells it).
struct CurrentType {
    /// The workflow's owner, as whom the type is altered.
    owner: pg_sys::Oid,
    oid: pg_sys::Oid,
    name: String,
    attributes: Vec<(String, String)>,
}

fn current_type(workflow: pgrx::Uuid) -> Option<CurrentType> {
    ok_or_raise(Spi::connect(|client| {
        let found = client
            .select(
                "SELECT t.oid::pg_catalog.int8, t.typrelid::pg_catalog.int8,
                        pg_catalog.format_type(t.oid, NULL), w.owner::pg_catalog.oid::pg_catalog.int8
                   FROM webhook.workflows w
                   JOIN pg_catalog.pg_type t ON t.oid OPERATOR(pg_catalog.=) w.record_type::pg_catalog.oid
                  WHERE w.id OPERATOR(pg_catalog.=) $1 AND t.typtype OPERATOR(pg_catalog.=) 'c'",
                None,
                &[DatumWithOid::from(workflow)],
            )?;
        if found.is_empty() {
            return Ok(None);
        }
        let found = found.first();
        let Some(oid) = found.get::<i64>(1)? else {
            return Ok(None);
        };
        let relid = found.get::<i64>(2)?.unwrap_or(0);
        let name = found.get::<String>(3)?.unwrap_or_default();
        let owner = found.get::<i64>(4)?.unwrap_or(0);
        let attributes = client
            .select(
                "SELECT a.attname::pg_catalog.text, pg_catalog.format_type(a.atttypid, a.atttypmod)
                   FROM pg_catalog.pg_attribute a
                  WHERE a.attrelid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                    AND a.attnum OPERATOR(pg_catalog.>) 0 AND NOT a.attisdropped
                  ORDER BY a.attnum",
                None,
                &[DatumWithOid::from(relid)],
            )?
            .map(|row| {
                Ok((
                    row.get::<String>(1)?.unwrap_or_default(),
                    row.get::<String>(2)?.unwrap_or_default(),
                ))
            })
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()?;
        Ok(Some(CurrentType {
            owner: pg_sys::Oid::from(owner as u32),
            oid: pg_sys::Oid::from(oid as u32),
            name,
            attributes,
        }))
    }))
}

/// The functions that take or return the type (or an array of it).
fn dependent_functions(type_oid: pg_sys::Oid) -> Vec<String> {
    ok_or_raise(Spi::connect(|client| {
        client
            .select(
                "SELECT DISTINCT d.objid::pg_catalog.regprocedure::pg_catalog.text
                   FROM pg_catalog.pg_depend d, pg_catalog.pg_type t
                  WHERE t.oid OPERATOR(pg_catalog.=) $1::pg_catalog.oid
                    AND d.classid OPERATOR(pg_catalog.=) 'pg_catalog.pg_proc'::pg_catalog.regclass
                    AND d.refclassid OPERATOR(pg_catalog.=) 'pg_catalog.pg_type'::pg_catalog.regclass
                    AND d.refobjid OPERATOR(pg_catalog.=) ANY (ARRAY[t.oid, t.typarray])
                  ORDER BY 1",
                None,
                &[DatumWithOid::from(i64::from(type_oid.to_u32()))],
            )?
            .map(|row| Ok(row.get::<String>(1)?.unwrap_or_default()))
            .collect::<Result<Vec<_>, pgrx::spi::Error>>()
    }))
}

#[pg_schema]
mod webhook {
    use super::*;

    /// The attributes a parameter list gives its record (arrays of one
    /// length, in list order): the `params` key, the attribute, its type.
    #[pg_extern(immutable, parallel_safe, strict)]
    fn _record_attributes_of(
        names: Vec<Option<String>>,
        sources: Vec<Option<String>>,
        types: Vec<Option<String>>,
    ) -> TableIterator<
        'static,
        (
            name!(name, String),
            name!(attribute, String),
            name!(type, String),
        ),
    > {
        let listed: Vec<ListedParameter> = names
            .into_iter()
            .zip(sources)
            .zip(types)
            .filter_map(|((name, source), ty)| {
                Some(ListedParameter {
                    name: name?,
                    source: source?.parse().ok()?,
                    ty: webhook_core::request::param_type(&ty?),
                    depth: 0,
                })
            })
            .collect();
        TableIterator::new(
            record::record_attributes(&listed)
                .into_iter()
                .map(|a| (a.key, a.name, a.ty.as_str().to_string())),
        )
    }

    /// Creates `schema.name` as an empty composite type owned by the
    /// workflow's owner (created as the owner: the owner needs CREATE on the
    /// schema), and returns it.
    #[pg_extern(volatile)]
    fn _create_record_type(workflow: pgrx::Uuid, schema: &str, name: &str) -> pg_sys::Oid {
        let owner = owner_of(workflow);
        let qualified = format!(
            "{}.{}",
            record::quote_ident(schema),
            record::quote_ident(name)
        );
        // USAGE only for the owner (and whom it grants): another role's
        // function taking the type would hold up its drops and retypes.
        as_role_with_safe_path(owner, || {
            ok_or_raise(Spi::run(&format!("CREATE TYPE {qualified} AS ()")));
            ok_or_raise(Spi::run(&format!(
                "REVOKE ALL ON TYPE {qualified} FROM PUBLIC"
            )));
        });
        let oid = ok_or_raise(Spi::get_one_with_args::<i64>(
            "SELECT pg_catalog.to_regtype($1)::pg_catalog.oid::pg_catalog.int8",
            &[DatumWithOid::from(qualified.as_str())],
        ))
        .unwrap_or(0);
        pg_sys::Oid::from(oid as u32)
    }

    /// Brings the workflow's record type to its parameter list with one
    /// `ALTER TYPE`, as the owner; refuses to drop or retype an attribute
    /// while a function takes the type. Nothing when the workflow has no
    /// record type (or it was dropped).
    #[pg_extern(volatile)]
    fn _sync_record_type(workflow: pgrx::Uuid) {
        require_workflow(workflow, true);
        let Some(current) = current_type(workflow) else {
            return;
        };
        let steps = record::changes(&current.attributes, &desired_attributes(workflow));
        if steps.is_empty() {
            return;
        }
        let breaking: Vec<String> = steps
            .iter()
            .filter(|s| s.breaks_users())
            .map(|s| {
                let was = current
                    .attributes
                    .iter()
                    .find(|(n, _)| n == s.attribute())
                    .map(|(_, t)| t.as_str())
                    .unwrap_or("");
                match s {
                    record::Change::Retype(name, ty) => {
                        format!("\"{name}\" ({was} to {})", ty.as_str())
                    }
                    _ => format!("\"{}\" ({was})", s.attribute()),
                }
            })
            .collect();
        if !breaking.is_empty() {
            let functions = dependent_functions(current.oid);
            if !functions.is_empty() {
                SqlError::RecordTypeInUse {
                    type_name: current.name,
                    attributes: breaking,
                    functions,
                }
                .report();
            }
        }
        let clauses: Vec<String> = steps.iter().map(record::Change::clause).collect();
        let sql = format!("ALTER TYPE {} {}", current.name, clauses.join(", "));
        as_role_with_safe_path(current.owner, || ok_or_raise(Spi::run(&sql)));
    }
}
