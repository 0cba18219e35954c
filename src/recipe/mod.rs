//! The recipe: what a run does, read from TOML in layers.
//!
//! Layers, lowest first: built-in defaults < the recipe file < `KDRUN_*` environment variables
//! (`KDRUN_TEACHER__EPOCHS=3`, sections and keys joined by a double underscore) < `--set key=value`
//! on the command line. [`load`] merges them with figment, deserializes into [`Recipe`] (unknown
//! keys and wrong types are errors), checks value ranges ([`validate`]) and resolves relative paths
//! against the folder of the layer that set them ([`resolve`]).

mod error;
mod load;
pub mod schema;
mod sections;
mod set;
pub mod sweep;
mod validate;

pub use error::{shown, shown_up_to, RecipeError};
pub use load::{load, load_checked, load_with_env, normalize, Check, LoadedRecipe, ENV_PREFIX};
pub use sections::*;
pub use set::{parse_set, SetArg};
pub use validate::{folder_name_problem, member_key, static_key};
