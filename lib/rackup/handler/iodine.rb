# frozen_string_literal: true

# Loaded by rackup's `Rackup::Handler.get("iodine")` (Rack 3 with the rackup gem, Rails ≥ 7.1):
# defines the handler (lib/iodine/rack_handler.rb) and registers it.
require "iodine"
Iodine::Rack.register_handlers
