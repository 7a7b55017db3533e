//! GenerateContentRequest parsing and validation.

use super::*;
