# frozen_string_literal: true

# Rack 3 + the rackup gem look for handlers here (`rackup -s iodine`).
require_relative "../../rack/handler/iodine"
