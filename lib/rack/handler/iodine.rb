# frozen_string_literal: true

require "iodine" unless defined?(Iodine::Base::Listen)

module Iodine
  # The Rack handler: `rackup -s iodine`, `Rack::Handler.get(:iodine)`, `rails s` with
  # RACK_HANDLER=iodine.
  module Rack
    # Set when this handler file was loaded.
    IODINE_RACK_LOADED = true

    # Serves `app` until stopped. Honours :Port and :Host; threads come from THREADS and
    # workers from WEB_CONCURRENCY or WORKERS (or the CLI).
    def self.run(app, options = {})
      port = options[:Port] || options["Port"] || Iodine::DEFAULT_SETTINGS[:port]
      host = options[:Host] || options["Host"] || Iodine::DEFAULT_SETTINGS[:address]
      threads = Iodine::Base::CLI.env_int("THREADS")
      Iodine.threads = threads if threads && Iodine.threads.zero?
      workers = Iodine::Base::CLI.env_int("WEB_CONCURRENCY") || Iodine::Base::CLI.env_int("WORKERS")
      Iodine.workers = workers if workers && Iodine.workers.zero?
      Iodine.listen(service: :http, handler: app, port: port, address: host)
      yield Iodine if block_given?
      Iodine.start
      true
    end

    # Stops the server (called by Rack on shutdown).
    def self.shutdown
      Iodine.stop
    end

    # Options shown by `rackup -h -s iodine`.
    def self.valid_options
      { "Port=PORT" => "Port to listen on (default: 3000)", "Host=HOST" => "Address to bind to" }
    end
  end
end

ENV["RACK_HANDLER"] ||= "iodine"

# Load the handler registry now, so `Rack::Handler.get(:iodine)` works even when iodine was
# required before rack (Bundler.require order): rackup's with Rack 3, rack's own with Rack 2.
unless defined?(::Rackup::Handler) || defined?(::Rack::Handler)
  begin
    require "rackup/handler"
  rescue LoadError
    begin
      require "rack/handler"
    rescue LoadError
      nil # no rack at all: nothing to register with
    end
  end
end

begin
  if defined?(::Rackup::Handler)
    ::Rackup::Handler.register(:iodine, Iodine::Rack)
  elsif defined?(::Rack::Handler)
    ::Rack::Handler.register("iodine", "Iodine::Rack")
    ::Rack::Handler.register("Iodine", "Iodine::Rack")
  end
rescue StandardError => e
  warn "Iodine: couldn't register the Rack handler: #{e.message}"
end
