# frozen_string_literal: true

module Iodine
  module Base
    # `-warmup` / `--preload`: before the server takes traffic (in the master, before any
    # fork, so workers share what it loaded), loads every constant registered with `autoload`
    # (walking the modules reachable from Object, as far as MAX_CONSTANTS), then sends one
    # `GET /` through the app so its lazy setup (routes, caches, templates) runs too. Nothing
    # here stops the server from starting: a constant or a request that fails is logged.
    module Warmup
      # Most constants looked at (a guard against huge or cyclic namespaces).
      MAX_CONSTANTS = 50_000

      module_function

      # Warms `app` up and logs what was done.
      def run(app)
        started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
        loaded = autoloads
        status = request(app)
        ms = ((Process.clock_gettime(Process::CLOCK_MONOTONIC) - started) * 1000).round
        Base.log(4, "Warmup: #{loaded} autoloaded constants loaded, GET / answered #{status} (#{ms} ms)")
      end

      # Loads the autoloaded constants of every module reachable from Object; how many.
      def autoloads
        seen = {}
        queue = [Object]
        loaded = 0
        looked = 0
        until queue.empty? || looked > MAX_CONSTANTS
          mod = queue.shift
          next if seen[mod.__id__]

          seen[mod.__id__] = true
          mod.constants(false).each do |name|
            looked += 1
            loaded += 1 if load_one(mod, name)
            value = begin
              mod.const_get(name, false)
            rescue StandardError, LoadError, NotImplementedError
              nil
            end
            queue << value if value.is_a?(Module) && !seen[value.__id__]
          end
        end
        loaded
      end

      # Loads `mod::name` if it is an autoload; true when it was.
      def load_one(mod, name)
        return false unless mod.autoload?(name, false)

        mod.const_get(name, false)
        true
      rescue StandardError, LoadError, NotImplementedError => e
        Base.log(3, "Warmup: #{mod == Object ? '' : "#{mod}::"}#{name} failed to load: #{e.class}: #{e.message}")
        false
      end

      # Sends one GET / through `app`; its status, or the error's class.
      def request(app)
        status, _headers, body = app.call(env)
        body.each { |_| nil } if body.respond_to?(:each)
        status
      rescue StandardError => e
        Base.log(3, "Warmup: GET / raised #{e.class}: #{e.message}")
        e.class
      ensure
        body.close if body.respond_to?(:close)
      end

      # A minimal Rack env for `GET /` (what the server would build for a bare request).
      def env
        port = Iodine::DEFAULT_SETTINGS[:port].to_s
        {
          "REQUEST_METHOD" => "GET", "SCRIPT_NAME" => "", "PATH_INFO" => "/", "QUERY_STRING" => "",
          "SERVER_NAME" => "localhost", "SERVER_PORT" => port.empty? ? "80" : port,
          "SERVER_PROTOCOL" => "HTTP/1.1", "HTTP_HOST" => "localhost", "HTTP_VERSION" => "HTTP/1.1",
          "REMOTE_ADDR" => "127.0.0.1", "rack.version" => [1, 3], "rack.url_scheme" => "http",
          "rack.input" => StringIO.new(String.new(encoding: Encoding::BINARY)), "rack.errors" => $stderr,
          "rack.multithread" => true, "rack.multiprocess" => false, "rack.run_once" => false,
          "rack.hijack?" => false, "iodine.warmup" => true
        }
      end
    end
  end
end
