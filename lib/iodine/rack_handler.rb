# frozen_string_literal: true

module Iodine
  # The Rack handler: `rackup -s iodine`, `Rack::Handler.get(:iodine)`,
  # `Rackup::Handler.get(:iodine)`, `rails s` with RACK_HANDLER=iodine.
  #
  # `require "iodine"` defines it and registers it with whichever handler registry is already
  # loaded (Rack 2's `Rack::Handler`, rackup's `Rackup::Handler`), and never loads (or defines)
  # `::Rack` itself. A registry loaded later finds it on its own: `get("iodine")` requires
  # `rack/handler/iodine` or `rackup/handler/iodine`, which register it.
  module Rack
    # Set when the handler was defined (the C gem set it in rack/handler/iodine.rb).
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
      # Warmed up before the port is bound: no client waits on a port that is not serving.
      Iodine::Base::Warmup.run(app) if Iodine::DEFAULT_SETTINGS[:warmup]
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

    # Registers the handler as `iodine` and `Iodine` with every registry loaded now.
    def self.register_handlers
      # registry => what it is given: Rack 2 wants a class name; rackup warns about Strings and
      # gets the class (also when Rack::Handler is rackup's alias of itself).
      registries = {}
      registries[::Rack::Handler] = "Iodine::Rack" if defined?(::Rack::Handler)
      registries[::Rackup::Handler] = Iodine::Rack if defined?(::Rackup::Handler)
      registries.each do |registry, target|
        %w[iodine Iodine].each { |handler| registry.register(handler, target) }
      end
    rescue StandardError => e
      Iodine::Base.log(3, "couldn't register the Rack handler: #{e.message}")
    end
  end
end

ENV["RACK_HANDLER"] ||= "iodine"
