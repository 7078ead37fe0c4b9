# frozen_string_literal: true

# Loaded by Rack 2's `Rack::Handler.get("iodine")` (and by `rackup -s iodine`): defines the
# handler (lib/iodine/rack_handler.rb) and registers it.
require "iodine"
Iodine::Rack.register_handlers
