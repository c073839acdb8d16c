//! Rows and text columns mapped to Rust types with declarative macros instead of sqlx's derives.
//!
//! `#[derive(sqlx::FromRow)]` and `#[derive(sqlx::Type)]` live in sqlx's proc-macro crate, which
//! builds a second sqlx-core, sqlx-postgres and tokio for the host: about a sixth of the CPU time
//! of the README's first build (issue 11, `bench/RESULTS.md`, "Build profiles"). These two
//! `macro_rules!` do the same for the shapes this workspace uses, and the compiler still checks
//! them: a field left out of [`from_row!`](crate::from_row) is a missing field in a struct
//! literal, and a variant left out of [`text_enum!`](crate::text_enum) a non-exhaustive match.

/// Implements `sqlx::FromRow` for a struct with named fields, each read from the column of its
/// name (what `#[derive(sqlx::FromRow)]` does).
///
/// ```
/// use chrono::{DateTime, Utc};
/// struct Minute { at: DateTime<Utc>, records: i64 }
/// importer_core::from_row!(Minute { at, records });
/// ```
#[macro_export]
macro_rules! from_row {
    ($ty:ident { $($field:ident),+ $(,)? }) => {
        impl<'r> ::sqlx::FromRow<'r, ::sqlx::postgres::PgRow> for $ty {
            fn from_row(row: &'r ::sqlx::postgres::PgRow) -> ::std::result::Result<Self, ::sqlx::Error> {
                use ::sqlx::Row as _;
                ::std::result::Result::Ok(Self {
                    $($field: row.try_get(::std::stringify!($field))?,)+
                })
            }
        }
    };
}

/// Gives a field-less enum its database name per variant: `as_str`, `Display` (that name), and
/// sqlx's `Type`, `Encode` and `Decode` for PostgreSQL as `text` (what `#[derive(sqlx::Type)]` with
/// `#[sqlx(type_name = "text")]` does). Decoding an unknown name is an error naming the type.
#[macro_export]
macro_rules! text_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            /// The name stored in the database.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($ty::$variant => $text,)+
                }
            }
        }

        impl ::std::fmt::Display for $ty {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::sqlx::Type<::sqlx::Postgres> for $ty {
            fn type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::type_info()
            }

            fn compatible(ty: &::sqlx::postgres::PgTypeInfo) -> bool {
                <&str as ::sqlx::Type<::sqlx::Postgres>>::compatible(ty)
            }
        }

        impl ::sqlx::postgres::PgHasArrayType for $ty {
            fn array_type_info() -> ::sqlx::postgres::PgTypeInfo {
                <&str as ::sqlx::postgres::PgHasArrayType>::array_type_info()
            }
        }

        impl<'q> ::sqlx::Encode<'q, ::sqlx::Postgres> for $ty {
            fn encode_by_ref(
                &self,
                buf: &mut ::sqlx::postgres::PgArgumentBuffer,
            ) -> ::std::result::Result<::sqlx::encode::IsNull, ::sqlx::error::BoxDynError> {
                <&str as ::sqlx::Encode<'q, ::sqlx::Postgres>>::encode_by_ref(&self.as_str(), buf)
            }
        }

        impl<'r> ::sqlx::Decode<'r, ::sqlx::Postgres> for $ty {
            fn decode(
                value: ::sqlx::postgres::PgValueRef<'r>,
            ) -> ::std::result::Result<Self, ::sqlx::error::BoxDynError> {
                match <&str as ::sqlx::Decode<'r, ::sqlx::Postgres>>::decode(value)? {
                    $($text => ::std::result::Result::Ok($ty::$variant),)+
                    other => ::std::result::Result::Err(::std::format!(
                        "unknown {} {other:?}",
                        ::std::stringify!($ty)
                    )
                    .into()),
                }
            }
        }
    };
}
