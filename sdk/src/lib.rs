//! Custodian plugin SDK (skeleton): the plugin interface lands with the plugins issue.
