//! Converse request parsing and validation.

use super::*;
