"""The paper's tables, their bootstrap intervals and the claims read from them."""
